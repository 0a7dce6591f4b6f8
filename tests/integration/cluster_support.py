"""The cluster test's machinery: a Redis database of its own, a broker link it can cut, the cluster itself.

Other people run tests on the same Redis and PostgreSQL at the same time, so a run claims a free Redis
database number (and prefixes every broker key), and names its PostgreSQL databases after a random token.
"""

from __future__ import annotations

import random
import secrets
import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import create_engine, text

from dataengine.airflow.cluster import Cluster, ClusterConfig, Secrets, ensure_database, free_port
from dataengine.airflow.rest import AirflowAPI

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
CLAIM_KEY = "dataengine:cluster-test:claim"
#: Airflow's cluster policy for the test: retries after 2 s instead of the DAGs' minutes.
LOCAL_SETTINGS = f"""
from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds={timedelta(seconds=2).total_seconds()})
"""


@contextmanager
def redis_database() -> Iterator[int]:
    """A Redis database number (1-15) nobody else's test claimed; released and emptied of our keys after."""
    token = secrets.token_hex(8)
    for number in random.sample(range(1, 16), 15):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        if client.set(CLAIM_KEY, token, nx=True, ex=3600):
            try:
                yield number
            finally:
                if client.get(CLAIM_KEY) == token.encode():
                    client.delete(CLAIM_KEY)
                client.close()
            return
        client.close()
    raise RuntimeError("every Redis database 1-15 is claimed by another cluster test")


def drop_keys(db: int, prefix: str) -> None:
    """Delete the broker keys of one cluster."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def drop_databases(*names: str) -> None:
    """Drop PostgreSQL databases, closing their connections."""
    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class BrokerLink:
    """A TCP relay between the cluster and Redis: :meth:`cut` takes the broker away, :meth:`restore`
    brings it back, as if Redis went down, without touching the Redis others use."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._up = threading.Event()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.restore()
        self._thread.start()

    def restore(self) -> None:
        """Accept connections again."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self._up.set()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._up.clear()
        with self._lock:
            if self._listener is not None:
                # shutdown() stops listening at once; close() alone leaves the socket accepting while the
                # relay thread's poll() still holds a reference to it (CI saw a connection get through)
                with suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for a, b in self._pairs:
                for end in (a, b):
                    with suppress(OSError):
                        end.close()
            self._pairs.clear()

    def close(self) -> None:
        """Stop relaying."""
        self._stop.set()
        self.cut()

    def _serve(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if not self._up.is_set() or listener is None:
                self._stop.wait(0.1)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut while this connection was being accepted
                    for end in (client, upstream):
                        end.close()
                    continue
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        with suppress(OSError, ValueError):
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        for end in (a, b):
            with suppress(OSError):
                end.close()


@dataclass
class RunningCluster:
    """A started cluster, its API client and what it was started on."""

    cluster: Cluster
    api: AirflowAPI
    config: ClusterConfig
    link: BrokerLink
    bucket: str


@contextmanager
def running_cluster(
    home: Path, s3: dict[str, Any], bucket: str, extra_env: dict[str, str]
) -> Iterator[RunningCluster]:
    """The CeleryExecutor cluster on the local Redis (through a BrokerLink) and PostgreSQL, S3 on moto."""
    token = secrets.token_hex(4)
    metadata, lineage = f"airflow_cluster_{token}", f"lineage_cluster_{token}"
    prefix = f"dataengine-{token}:"
    with redis_database() as db:
        link = BrokerLink(("127.0.0.1", 6379))
        config = ClusterConfig(
            home=home,
            metadata_url=f"{POSTGRES}/{metadata}",
            lineage_url=f"{POSTGRES}/{lineage}",
            broker_url=f"redis://127.0.0.1:{link.port}/{db}",
            storage_url=f"s3://{bucket}/store",
            storage_options={k: v for k, v in s3.items() if k != "endpoint_url"},
            secrets=Secrets.from_env({}),
            api_port=free_port(),
            broker_key_prefix=prefix,
            paused_at_creation=True,
            extra_env=extra_env,
        )
        cluster = Cluster(config)
        api = AirflowAPI(config.api_url, "admin", config.secrets.admin_password)
        try:
            ensure_database(config.metadata_url)
            ensure_database(config.lineage_url)
            (home / "airflow" / "config").mkdir(parents=True, exist_ok=True)
            (home / "airflow" / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
            cluster.init()
            cluster.start()
            api.wait_healthy(timeout=300)
            cluster.wait_for_workers(timeout=300)
            yield RunningCluster(cluster, api, config, link, bucket)
        finally:
            api.close()
            cluster.stop()
            link.close()
            drop_keys(db, prefix)
            drop_databases(metadata, lineage)
