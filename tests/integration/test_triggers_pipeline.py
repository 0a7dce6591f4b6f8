"""Every trigger through the CLI and ``run_triggers`` on real ingested synthetic video, with lineage that
explains each decision, the detection cache, the anomaly retrain, the timeline plot and the Airflow skip."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ingest
from dataengine.lineage.clips import list_clips
from dataengine.lineage.datasets import create_dataset
from dataengine.lineage.model_registry import register_model, set_model_status
from dataengine.lineage.triggers import trigger_scores
from dataengine.synthetic import write_landing
from dataengine.triggers import NO_MODEL_MESSAGE, TRIGGERS, run_triggers
from dataengine.triggers.anomaly_task import train_anomaly
from dataengine.triggers.loading import load_models
from dataengine.vision import Detections, Detector, build_detector, save_checkpoint
from dataengine.vision.detection_cache import ClipBatchItem, detect_clips, detections_key, load_detections

CLASSES = ["person", "bed", "wheelchair"]
runner = CliRunner()


def call(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'lineage.db'}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("DATAENGINE_CLIP_SECONDS", "1")
    monkeypatch.setenv("DATAENGINE_SAMPLE_FPS", "5")
    return tmp_path


def engine_with_clips(tmp_path: Path, **overrides: Any) -> Context:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'lineage.db'}",
        storage_url=f"file://{tmp_path / 'store'}",
        clip_seconds=1.0,
        sample_fps=5.0,
        device="cpu",
        score_threshold=0.2,
        **overrides,
    )
    ctx = Context.create(settings, run_id="test/run")
    write_landing(ctx.store, n_videos=2, seed=5, seconds=2.0, fps=10.0)
    ingest(ctx)
    return ctx


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Context]:
    ctx = engine_with_clips(tmp_path)
    yield ctx
    ctx.close()


def add_model(ctx: Context, model_id: str, *, seed: int, class_boxes: dict[str, int] | None = None) -> None:
    """A promoted tiny detector; with ``class_boxes``, trained on a dataset of that class balance."""
    torch.manual_seed(seed)
    model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=64, max_size=96)
    uri = save_checkpoint(
        ctx.store, model_id, model=model, arch="tiny_fasterrcnn", classes=CLASSES, min_size=64, max_size=96
    )
    dataset_id = None
    with ctx.db.session() as session:
        if class_boxes is not None:
            counts = {"class_boxes": {"train": class_boxes, "val": dict.fromkeys(class_boxes, 0)}}
            dataset = create_dataset(
                session, name=f"for-{model_id}", version=1, manifest_uri="file:///none",
                manifest_sha256="0" * 64, counts=counts, members=[],
            )  # fmt: skip
            dataset_id = dataset.id
        register_model(
            session, model_id=model_id, checkpoint_uri=uri, dataset_id=dataset_id, parent_model_id=None
        )
        set_model_status(session, model_id, "promoted")


def test_cli_scores_explains_and_plots(cli_env: Path) -> None:
    write_landing(
        __import__("dataengine.storage", fromlist=["ObjectStore"]).ObjectStore(f"file://{cli_env / 'store'}"),
        n_videos=2, seed=5, seconds=2.0, fps=10.0,
    )  # fmt: skip
    call("ingest")
    clips = call("clips", "list", "--json")
    assert len(clips) == 4
    trained = call("triggers", "train-anomaly", "--epochs", "2", "--json")
    assert (trained["trained"], trained["n_clips"]) == (True, 4)
    assert call("triggers", "train-anomaly", "--epochs", "2", "--json")["trained"] is False

    report = call("triggers", "--budget-count", "2", "--json")
    assert set(report["skipped_triggers"]) == {"flicker", "temporal", "disagreement", "rare_class"}
    assert set(report["skipped_triggers"].values()) == {NO_MODEL_MESSAGE}
    assert len(report["selected"]) == 2
    first = report["scored"][0]
    assert set(report["scores"][first]) == {"brightness", "blur", "frozen", "scene_cut", "anomaly"}

    chosen = report["selected"][0]
    shown = call("clip", "show", chosen, "--json")
    decision = shown["events"][-1]["details"]
    assert (shown["events"][-1]["stage"], decision["decision"]) == ("selected", "selected")
    assert decision["reason"] == "ranked within the budget of 2"
    assert set(decision["weighted_scores"]) == set(report["scores"][chosen])
    anomaly_row = next(t for t in shown["triggers"] if t["trigger"] == "anomaly")
    assert anomaly_row["model_id"] == trained["model_id"]
    assert "reason=ranked within the budget of 2" in call("clip", "show", chosen)

    out = cli_env / "timeline.png"
    printed = call("triggers", "timeline", clips[0]["video_id"], "--out", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 clip(s)" in printed
    assert "no clips of video" in call("triggers", "timeline", "ffffffffffffffff", "--out", str(out), code=1)


def test_every_trigger_runs_and_detections_are_cached_for_reuse(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(engine, "m-1", seed=1, class_boxes={"person": 50, "bed": 46, "wheelchair": 4})
    train_anomaly(engine, epochs=2)
    calls: list[int] = []
    real = Detector.predict

    def counting(self: Detector, frames: Sequence[np.ndarray], **kwargs: Any) -> list[Detections]:
        calls.append(len(frames))
        return real(self, frames, **kwargs)

    monkeypatch.setattr(Detector, "predict", counting)
    report = run_triggers(engine, budget_count=1)
    assert calls == [20]  # 4 clips x 5 frames in one batched pass
    assert list(report.skipped_triggers) == ["disagreement"]
    assert all(set(s) == set(TRIGGERS.names()) - {"disagreement"} for s in report.scores.values())
    clip_id = report.scored[0]
    assert engine.store.exists(detections_key(clip_id, "m-1"))
    with engine.db.session() as session:
        rows = {row.trigger: row for row in trigger_scores(session, clip_id)}
    assert rows["flicker"].model_id == "m-1"
    assert (rows["anomaly"].model_id or "").startswith("anomaly-")
    assert rows["blur"].model_id is None

    # Autolabel (or a rerun) on the same frames reads the cache instead of running the model again.
    detector = __import__("dataengine.vision", fromlist=["load_any_detector"]).load_any_detector(
        engine.store, "m-1", device="cpu"
    )
    from dataengine.clips import read_sampled_frames

    indices, frames = read_sampled_frames(engine.store, clip_id)
    calls.clear()
    cached = detect_clips(engine.store, detector, [ClipBatchItem(clip_id, indices, frames)], min_score=0.2)
    assert calls == []
    fresh = real(detector, frames, score_threshold=0.2)
    for a, b in zip(cached[clip_id], fresh, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    assert load_detections(engine.store, clip_id, "m-1", indices=indices, min_score=0.01) is None
    assert load_detections(engine.store, clip_id, "m-1", indices=indices[:1], min_score=0.5) is None
    engine.store.write_bytes(detections_key(clip_id, "m-1"), b"garbage")
    assert load_detections(engine.store, clip_id, "m-1", indices=indices, min_score=0.5) is None


def test_rare_class_reads_the_class_balance_the_promoted_model_was_trained_on(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    chair = Detections(np.array([[20, 20, 50, 60]], np.float32), np.array([0.9], np.float32), np.array([2]))
    # One batch of 4 clips x 5 frames: only the first clip's frames show a wheelchair.
    monkeypatch.setattr(
        Detector,
        "predict",
        lambda self, frames, **kw: [chair if i < 5 else Detections.empty() for i in range(20)],
    )
    add_model(engine, "m-1", seed=1, class_boxes={"person": 50, "bed": 46, "wheelchair": 4})
    report = run_triggers(engine, budget_count=1, triggers=["rare_class", "temporal"])
    assert report.skipped_triggers == {}
    # Five sampled frames at 0.9, and wheelchairs are 4% of the training boxes (rarity 1 - 3 x 0.04).
    first = report.scored[0]
    assert report.scores[first]["rare_class"] == pytest.approx(0.88 * (1 - 0.1**5))
    assert [report.scores[c]["rare_class"] for c in report.scored[1:]] == [0.0] * 3
    assert report.selected == [first]
    with engine.db.session() as session:
        row = next(r for r in trigger_scores(session, first) if r.trigger == "rare_class")
    assert (row.model_id, row.details["class"], row.details["prior_share"]) == ("m-1", "wheelchair", 0.04)
    assert len(row.frames) == 5
    assert "strongest trigger rare_class" in report.reasons[report.selected[0]]


def test_rare_class_is_skipped_with_the_reason_when_the_class_balance_is_unknown(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    report = run_triggers(engine, budget_count=1, triggers=["rare_class", "blur"])
    assert report.skipped_triggers == {
        "rare_class": "the promoted model m-1 names no dataset, so its class balance is unknown"
    }
    assert all(set(s) == {"blur"} for s in report.scores.values())
    add_model(engine, "m-2", seed=2, class_boxes={"person": 0, "bed": 0, "wheelchair": 0})
    with engine.db.session() as session:
        set_model_status(session, "m-1", "retired")
    why = run_triggers(engine, budget_count=1, triggers=["rare_class"]).skipped_triggers["rare_class"]
    assert why.startswith("dataset for-m-2@1 of the promoted model m-2 records no boxes per class")


def test_rare_class_of_an_imported_model_reads_the_class_balance_of_the_newest_dataset(
    engine: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataengine.training.model_import import ModelImportRequest, import_model
    from model_files import torchvision_state_dict

    chair = Detections(np.array([[20, 20, 50, 60]], np.float32), np.array([0.9], np.float32), np.array([2]))
    monkeypatch.setattr(
        Detector,
        "predict",
        lambda self, frames, **kw: [chair if i < 5 else Detections.empty() for i in range(20)],
    )
    weights = torchvision_state_dict(tmp_path / "team.pth", arch="tiny_fasterrcnn", num_classes=3)
    model_id = import_model(engine, ModelImportRequest(arch="tiny_fasterrcnn", weights=str(weights))).model_id
    # Day one: nothing to take a class balance from yet.
    rare_class = [TRIGGERS.get("rare_class")]
    why = load_models(engine, rare_class, load=False).skipped["rare_class"]
    assert why.startswith(f"the promoted model {model_id} is imported and there is no dataset yet")
    # Once reviewed clips make a dataset, its training split says which classes the next model lacks.
    with engine.db.session() as session:
        for version, boxes in (
            (1, {"person": 5, "bed": 5, "wheelchair": 5}),
            (2, {"person": 50, "bed": 46, "wheelchair": 4}),
        ):
            counts = {"class_boxes": {"train": boxes, "val": dict.fromkeys(boxes, 0)}}
            create_dataset(
                session, name="default", version=version, manifest_uri="file:///none",
                manifest_sha256="0" * 64, counts=counts, members=[],
            )  # fmt: skip
    report = run_triggers(engine, budget_count=1, triggers=["rare_class"])
    assert report.skipped_triggers == {}
    first = report.scored[0]
    assert report.scores[first]["rare_class"] == pytest.approx(0.88 * (1 - 0.1**5))
    with engine.db.session() as session:
        row = next(r for r in trigger_scores(session, first) if r.trigger == "rare_class")
    assert (row.model_id, row.details["class"], row.details["prior_share"]) == (model_id, "wheelchair", 0.04)


def test_zero_detections_and_a_single_frame_clip_score_cleanly(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(engine, "m-1", seed=1)
    monkeypatch.setattr(Detector, "predict", lambda self, frames, **kw: [Detections.empty() for _ in frames])
    with engine.db.session() as session:
        single = list_clips(session)[0].id
    meta = engine.store.read_json(f"clips/{single}/meta.json")
    meta["sampled"] = meta["sampled"][:1]
    engine.store.write_json(f"clips/{single}/meta.json", meta)
    report = run_triggers(engine, budget_count=1, triggers=["flicker", "temporal", "brightness", "frozen"])
    assert len(report.scored) == 4
    assert report.scores[single] == {"flicker": 0.0, "temporal": 0.0, "brightness": 0.0, "frozen": 0.0}
    assert all(s["flicker"] == 0.0 and s["temporal"] == 0.0 for s in report.scores.values())


def test_the_same_clips_give_the_same_selection(tmp_path: Path) -> None:
    reports = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ctx = engine_with_clips(tmp_path / name)
        train_anomaly(ctx, epochs=2)
        reports.append(run_triggers(ctx, budget_count=2))
        ctx.close()
    first, second = reports
    assert first.selected == second.selected
    assert first.scores == second.scores
    assert first.reasons == second.reasons


@pytest.mark.airflow
def test_detect_triggers_with_no_new_clips_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow", reason="apache-airflow is not installed")
    from airflow.sdk.exceptions import AirflowSkipException

    from dataengine.airflow.operators import RetrainAnomalyOperator, TriggersOperator

    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'lineage.db'}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    ti = SimpleNamespace(
        dag_id="detect_triggers", run_id="manual__1", task_id="score_and_select", map_index=-1
    )
    with pytest.raises(AirflowSkipException, match="no new clips to score"):
        TriggersOperator(task_id="score_and_select").execute({"ti": ti})  # type: ignore[typeddict-item]
    with pytest.raises(AirflowSkipException, match="no clips to train on"):
        RetrainAnomalyOperator(task_id="train_anomaly").execute({"ti": ti})  # type: ignore[typeddict-item]
