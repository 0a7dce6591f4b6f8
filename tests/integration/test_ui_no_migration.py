"""The monitoring app never migrates the database it serves; an unmigrated one gets a page saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from dataengine.airflow.ui import create_app


def test_the_ui_does_not_migrate_and_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "lineage.db"
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    client = TestClient(create_app(), raise_server_exceptions=False)

    page = client.get("/")

    assert page.status_code == 503
    assert "run `dataengine init`" in page.text
    engine = create_engine(f"sqlite:///{database}")
    assert inspect(engine).get_table_names() == []  # no alembic_version, no tables
    engine.dispose()
