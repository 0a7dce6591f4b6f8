"""The lineage view that the Airflow plugin mounts at /dataengine."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dataengine.airflow.ui import create_app
from dataengine.context import Context
from dataengine.lineage import repository as repo

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    with ctx.db.session() as session:
        repo.register_video(session, video_id="ab" * 8, uri="u", sha256="ab" * 32, status="ingested")
        repo.register_clip(
            session, clip_id=f"{'ab' * 8}-0000000", video_id="ab" * 8, start_frame=0, end_frame=20,
            start_time=0.0, n_frames=20, uri="u",
        )  # fmt: skip
        repo.register_model(
            session, model_id="m-1", checkpoint_uri="c", dataset_id=None, parent_model_id=None,
            metrics={"eval": {"map": 0.5, "map50": 0.75}},
        )  # fmt: skip
        repo.set_model_status(session, "m-1", "promoted")
    return TestClient(create_app())


def test_status_json_and_page(client: TestClient) -> None:
    status = client.get("/api/status").json()
    assert (status["videos"], status["clips"], status["promoted_model"]) == (1, 1, "m-1")
    assert status["stages"]["ingested"] == 1
    page = client.get("/")
    assert page.status_code == 200
    assert "1 videos, 1 clips" in page.text
    assert "<td>m-1</td><td>promoted</td>" in page.text
    assert "0.75" in page.text


def test_clip_history_and_unknown_clip(client: TestClient) -> None:
    history = client.get(f"/api/clips/{'ab' * 8}-0000000").json()
    assert [e["stage"] for e in history["events"]] == ["ingested"]
    missing = client.get("/api/clips/nope")
    assert missing.status_code == 404
    assert "no clip 'nope'" in missing.json()["detail"]


def test_the_plugin_requires_an_airflow_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    plugin = runpy.run_path(str(REPO / "plugins" / "dataengine_plugin.py"))["DataEnginePlugin"]
    (spec,) = plugin.fastapi_apps
    assert spec["url_prefix"] == "/dataengine"
    response = TestClient(spec["app"]).get("/api/status")
    assert response.status_code == 401
