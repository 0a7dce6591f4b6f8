"""Shared fixtures: stores on every backend, lineage databases on SQLite and PostgreSQL, a Context."""

from __future__ import annotations

import os

# One OpenMP thread per test process: pytest-xdist already runs one worker per core, and torch's
# default (a thread per core in every worker) spins its threads against each other on a busy machine
# (a tiny detector's training took 465 s instead of 56 s at load 10). Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.db import Database, open_database
from dataengine.storage import ObjectStore

POSTGRES_URL = os.environ.get(
    "DATAENGINE_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@localhost:5432/postgres"
)


def _postgres_reachable() -> str | None:
    """None when the test Postgres answers, else why not."""
    url = make_url(POSTGRES_URL)
    try:
        with socket.create_connection((url.host or "localhost", url.port or 5432), timeout=2):
            pass
    except OSError as exc:
        return f"no PostgreSQL at {url.host}:{url.port}: {exc}"
    return None


_PG_MISSING = _postgres_reachable()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's DATAENGINE_* settings or a dataengine.toml in the working dir."""
    for name in list(os.environ):
        if name.startswith("DATAENGINE_") and name != "DATAENGINE_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    if _PG_MISSING:
        pytest.skip(f"PostgreSQL tests skipped: {_PG_MISSING}")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"dataengine_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh lineage database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lineage.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated lineage database on each backend."""
    database = open_database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite lineage database, for tests that are not about the database."""
    database = open_database(f"sqlite:///{tmp_path / 'lineage.db'}")
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """A local-folder object store."""
    return ObjectStore(f"file://{tmp_path / 'store'}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's standalone S3 server on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield {
            "endpoint_url": endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_server: dict[str, Any]) -> ObjectStore:
    """An object store in a fresh bucket on the moto S3 server, reached through s3fs."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_server["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    options = {k: v for k, v in s3_server.items() if k != "endpoint_url"}
    return ObjectStore(f"s3://{bucket}/data", **options)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a small, fast engine in ``tmp_path``."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'lineage.db'}",
        storage_url=f"file://{tmp_path / 'store'}",
        clip_seconds=2.0,
        sample_fps=2.0,
        train_epochs=1,
        review_retry_wait=0.0,  # retries of platform calls without sleeping
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    """A Context on SQLite and a local folder."""
    context = Context.create(settings, run_id="test/run")
    yield context
    context.close()
