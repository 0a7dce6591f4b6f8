"""one_click_train through `airflow dags test` on tiny data: a promoted model and a report, then a skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_training import add_video

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.demo import AirflowRunner
from dataengine.lineage.datasets import get_dataset
from dataengine.lineage.model_registry import list_models

pytest.importorskip("airflow", reason="apache-airflow is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def task_log(workdir: Path, label: str) -> str:
    return (workdir / "airflow-logs" / f"{label}-one_click_train.log").read_text()


def test_one_click_train_trains_promotes_reports_and_then_skips(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'lineage.db'}",
        storage_url=f"file://{tmp_path / 'store'}",
        train_epochs=1,
        train_nproc=1,
        device="cpu",
    )
    ctx = Context.create(settings, run_id="test/dag")
    for name in ("dag-1", "dag-2", "dag-3"):
        add_video(ctx, name, n_clips=1, n_frames=2)
    env = {
        "DATAENGINE_DATABASE_URL": settings.database_url,
        "DATAENGINE_STORAGE_URL": settings.storage_url,
        "DATAENGINE_TRAIN_EPOCHS": "1",
        "DATAENGINE_TRAIN_NPROC": "1",
        "DATAENGINE_DEVICE": "cpu",
    }
    runner = AirflowRunner(tmp_path, env, lambda _: None)
    runner.env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"  # the report and the skip reason are INFO lines
    runner.setup()

    runner.run("one_click_train", "first")
    with ctx.db.session() as session:
        (model,) = list_models(session)
        dataset = get_dataset(session, "default")
    first = task_log(tmp_path, "first")
    runner.run("one_click_train", "again")
    with ctx.db.session() as session:
        models_after = [m.id for m in list_models(session)]
    again = task_log(tmp_path, "again")
    ctx.close()

    assert (model.status, model.dataset_id, dataset.id) == ("promoted", "default@1", "default@1")
    assert model.metrics["eval"]["held_out"] == "default-heldout@1"
    assert model.metrics["config"]["arch"] == "tiny_fasterrcnn"
    assert "dataset default@1: 3 clips" in first
    assert "+3 added, -0 removed, ~0 relabelled" in first
    assert "regression set: default-heldout@1" in first
    assert "  before: none" in first
    assert f"  after: {model.id} mAP" in first
    assert "edge-case set: none yet" in first
    assert f"decision: {model.id} promoted: no model is promoted yet" in first
    assert models_after == [model.id]  # nothing new trained
    assert f"no new reviewed data: default@1 has the same clips as before and model {model.id}" in again
    assert "Skipping task" not in first
    assert json.loads(json.dumps(model.metrics))["train"]["world_size"] == 1
