"""An open-vocabulary model (OWLv2, random tiny weights saved by `save_pretrained`) in the loop on real video:
the first promoted model for triggers and autolabel, an ensemble member beside another, shown by the UI,
and never a silent warm start for training (it is inference-only)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.formats import load_annotations
from dataengine.lineage.model_registry import set_model_status
from dataengine.training.runner import warm_start_model
from model_files import tiny_owlv2_folder
from real_video import BIKES, sample_video

runner = CliRunner()
CLASSES = ["person", "bicycle"]


def call(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout) if "--json" in args else result.output


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'lineage.db'}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("DATAENGINE_CLASSES", json.dumps(CLASSES))
    return tmp_path


def _context(engine: Path) -> Context:
    settings = Settings(
        database_url=f"sqlite:///{engine / 'lineage.db'}", storage_url=f"file://{engine / 'store'}",
        classes=CLASSES,
    )  # fmt: skip
    return Context.create(settings, run_id="test/open-vocab")


def test_an_open_vocabulary_model_serves_triggers_autolabel_and_the_ui_but_no_warm_start(
    engine: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tiny_owlv2_folder(engine / "owlv2")
    prompts = "a photo of a person=person,a photo of a bicycle=bicycle"
    owl = call("model", "import", str(folder), "--arch", "owlv2", "--class-map", prompts, "--json")
    assert owl["status"] == "promoted"
    hog = call("model", "import", "--arch", "opencv_hog", "--no-promote", "--json")
    assert hog["status"] == "candidate"
    call("ingest", str(sample_video(BIKES)), "--clip-seconds", "4", "--sample-fps", "2")
    clip_ids = [clip["clip_id"] for clip in call("clips", "list", "--json")]
    assert len(clip_ids) == 3

    # The triggers that need a model run with the open-vocabulary one; disagreement compares it with
    # the HOG detector named as the reference. rare_class needs a training set's class balance.
    monkeypatch.setenv("DATAENGINE_TRIGGER_REFERENCE_MODEL", hog["model_id"])
    triggers = call("triggers", "--budget-count", "2", "--json")
    assert triggers["model_id"] == owl["model_id"]
    assert set(triggers["skipped_triggers"]) == {"rare_class", "anomaly"}
    no_balance = triggers["skipped_triggers"]["rare_class"]
    assert f"the promoted model {owl['model_id']} is imported and there is no dataset yet" in no_balance
    for name in ("flicker", "temporal", "disagreement"):
        assert {name in scores for scores in triggers["scores"].values()} == {True}, name
    assert len(triggers["selected"]) == 2

    # As the first promoted model, and then as an ensemble member beside another.
    alone = call("autolabel", "--json")
    assert alone["model_ids"] == [owl["model_id"]]
    assert sorted(alone["clips"]) == sorted(triggers["selected"])
    monkeypatch.setenv("DATAENGINE_AUTOLABEL_MODELS", json.dumps(["promoted", hog["model_id"]]))
    labelled = sorted(alone["clips"])
    both = call("autolabel", *(arg for c in labelled for arg in ("--clip", c)), "--json")
    assert sorted(both["clips"]) == labelled
    assert both["model_ids"] == [owl["model_id"], hog["model_id"]]
    ctx = _context(engine)
    clip_id = labelled[0]
    first, second = (load_annotations(ctx.store, clip_id, v) for v in (1, 2))
    assert first.producer["models"] == [owl["model_id"]]
    assert second.producer["models"] == [owl["model_id"], hog["model_id"]]
    assert (second.source, second.parent_version) == ("autolabel", 1)
    assert {box.label for frame in second.frames for box in frame.boxes} <= set(CLASSES)

    # Training cannot start from it: it is not the architecture being trained. It says so, and why.
    with caplog.at_level(logging.WARNING, logger="dataengine.training.runner"):
        assert warm_start_model(ctx, arch=ctx.settings.detector_arch, classes=CLASSES) == ""
    assert f"not warm-starting from the promoted {owl['model_id']}" in caplog.text
    assert "its owlv2 model (backend transformers) is inference-only" in caplog.text

    # The UI shows the model and the clip it labelled.
    client = TestClient(create_ui(ctx))
    models = client.get("/models")
    assert models.status_code == 200
    assert owl["model_id"] in models.text
    assert f"imported: {folder.name}" in models.text
    clip_page = client.get(f"/clips/{clip_id}")
    assert clip_page.status_code == 200
    assert owl["model_id"] in clip_page.text

    # A later promotion reaches autolabel through the alias: the producer names the new model.
    with ctx.db.session() as session:
        set_model_status(session, hog["model_id"], "promoted")
    monkeypatch.delenv("DATAENGINE_AUTOLABEL_MODELS")
    after = call("autolabel", "--clip", clip_id, "--json")
    assert after["model_ids"] == [hog["model_id"]]
    assert load_annotations(ctx.store, clip_id, 3).producer["models"] == [hog["model_id"]]
    ctx.close()


def create_ui(ctx: Context) -> Any:
    from dataengine.airflow.ui import create_app

    return create_app(context_factory=lambda: ctx)


def test_the_first_trained_model_is_judged_against_a_promoted_open_vocabulary_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from test_day_one_dags import engine_env, land, review_in_the_tasks

    engine = land(tmp_path)
    for name, value in engine_env(engine).items():
        monkeypatch.setenv(name, value)
    owl = call("model", "import", str(tiny_owlv2_folder(engine / "owlv2")), "--arch", "owlv2", "--json")
    assert owl["class_map"] == {"person": "person", "bicycle": "bicycle"}  # our class names are the prompts
    call("ingest")
    call("triggers")
    assert call("autolabel", "--json")["model_ids"] == [owl["model_id"]]
    call("review", "export")
    ctx = _context(engine)
    assert len(review_in_the_tasks(ctx.store, engine)) == 3
    call("review", "import")
    call("dataset", "build")
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 0, result.output
    second = result.stdout.strip().splitlines()[-1]
    assert f"not warm-starting from the promoted {owl['model_id']}" in caplog.text
    assert "Loading weights" not in result.stderr  # transformers' progress bars stay out of the CLI
    metrics = json.loads((engine / "store" / "models" / second / "metrics.json").read_text())
    # Evaluated on the same held-out set, the open-vocabulary model included (it sees whole frames).
    assert metrics["decision"]["previous_model_id"] == owl["model_id"]
    assert metrics["decision"]["held_out"] == "default-heldout@1"
    assert metrics["decision"]["previous_map"] is not None
    ctx.close()
