"""Clip annotation schema v1: validation, save/load and versions, and the COCO export."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from dataengine.errors import AnnotationValidationError, ObjectExistsError, ObjectNotFoundError
from dataengine.formats import (
    Box,
    ClipAnnotations,
    Frame,
    json_schema,
    list_versions,
    load_annotations,
    next_version,
    save_annotations,
    sha256_hex,
    validate_document,
)
from dataengine.formats.coco import to_coco, xyxy_to_xywh
from dataengine.storage import ObjectStore

CLIP = "3fa2c1d9e0b7a455-0000300"
CLASSES = ["person", "bed", "wheelchair"]


def make_annotations(version: int = 1, *, n_frames: int = 3, source: str = "autolabel") -> ClipAnnotations:
    frames = []
    for i in range(n_frames):
        boxes = [Box(label="person", xyxy=(10.0 + i, 20.0, 50.0 + i, 90.0), track=1, score=0.9)]
        if i == 1:
            boxes.append(Box(label="bed", xyxy=(100.0, 100.0, 200.0, 150.0), track=2, score=0.6))
        frames.append(Frame(index=i * 5, image=f"frames/{i * 5:06d}.jpg", width=320, height=240, boxes=boxes))
    frames.append(Frame(index=n_frames * 5, image="frames/x.jpg", width=320, height=240, boxes=[]))
    return ClipAnnotations(
        clip_id=CLIP,
        version=version,
        parent_version=version - 1 if version > 1 else None,
        source=source,  # type: ignore[arg-type]
        producer={"models": ["m-1"]},
        classes=CLASSES,
        frames=frames,
        created_at="2026-11-22T10:00:00Z",
    )


def test_schema_file_is_a_valid_json_schema() -> None:
    schema = json_schema()
    assert schema["properties"]["schema"]["const"] == "dataengine.clip-annotations/1"


def test_document_roundtrip_is_lossless_and_canonical() -> None:
    ann = make_annotations()
    again = ClipAnnotations.from_json_bytes(ann.to_json_bytes())
    assert again == ann
    assert again.to_json_bytes() == ann.to_json_bytes()
    assert again.n_boxes == 4
    empty = again.frame(15)
    assert empty is not None
    assert empty.boxes == []


def _mutate(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(make_annotations().to_dict())
    target: Any = doc
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "problem"),
    [
        ("frames.0.boxes.0.xyxy", [50.0, 20.0, 10.0, 90.0], "$.frames[0].boxes[0].xyxy", "inverted"),
        ("frames.0.boxes.0.xyxy", [10.0, 20.0, 10.0, 90.0], "$.frames[0].boxes[0].xyxy", "empty"),
        ("frames.0.boxes.0.xyxy", [10.0, 20.0, 400.0, 90.0], "$.frames[0].boxes[0].xyxy", "outside"),
        ("frames.0.boxes.0.xyxy", [10.0, 20.0, 30.0], "$.frames[0].boxes[0].xyxy", "too short"),
        ("frames.0.boxes.0.label", "dog", "$.frames[0].boxes[0].label", "not one of the classes"),
        ("frames.0.boxes.0.score", None, "$.frames[0].boxes[0].score", "needs a score"),
        ("frames.0.boxes.0.score", 1.5, "$.frames[0].boxes[0].score", "maximum"),
        ("frames.0.boxes.0.origin", "magic", "$.frames[0].boxes[0].origin", "magic"),
        ("frames.1.index", 0, "$.frames[1].index", "listed twice"),
        ("frames.0.width", 0, "$.frames[0].width", "minimum"),
        ("clip_id", "not-an-id", "$.clip_id", "does not match"),
        ("schema", "other/2", "$.schema", "dataengine.clip-annotations/1"),
        ("source", "guess", "$.source", "guess"),
        ("parent_version", 1, "$.parent_version", "not older"),
        ("frames", _DELETE, "$", "'frames' is a required property"),
    ],
)
def test_invalid_documents_name_the_field(path: str, value: Any, field: str, problem: str) -> None:
    doc = _mutate(path, value)
    with pytest.raises(AnnotationValidationError) as info:
        validate_document(doc, source_name="s3://bucket/ann.json")
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value).startswith("s3://bucket/ann.json: invalid annotation at ")


def test_human_boxes_must_not_carry_a_score() -> None:
    doc = _mutate("frames.0.boxes.0.origin", "human")
    with pytest.raises(AnnotationValidationError, match="score null"):
        validate_document(doc)


def test_not_json_is_a_validation_error() -> None:
    with pytest.raises(AnnotationValidationError, match="not valid JSON"):
        ClipAnnotations.from_json_bytes(b"{nope", source_name="x.json")


def test_save_and_load_versions(store: ObjectStore) -> None:
    assert list_versions(store, CLIP) == []
    assert next_version(store, CLIP) == 1
    saved1 = save_annotations(store, make_annotations(1))
    saved2 = save_annotations(store, make_annotations(2, n_frames=2, source="review"))
    assert saved1.uri.endswith(f"annotations/{CLIP}/v0001.json")
    assert (saved1.n_frames, saved1.n_boxes, saved1.written) == (4, 4, True)
    assert (saved2.n_frames, saved2.n_boxes) == (3, 3)
    assert list_versions(store, CLIP) == [1, 2]
    assert next_version(store, CLIP) == 3
    assert load_annotations(store, CLIP).version == 2
    assert load_annotations(store, CLIP).source == "review"
    assert load_annotations(store, CLIP, 1) == make_annotations(1)


def test_saved_file_holds_the_canonical_bytes(store: ObjectStore) -> None:
    """save_annotations validates the document it serialises; the file is ``to_json_bytes()``."""
    annotations = make_annotations(1)
    saved = save_annotations(store, annotations)
    data = store.read_bytes(f"annotations/{CLIP}/v0001.json")
    assert data == annotations.to_json_bytes()
    assert saved.sha256 == sha256_hex(data)
    assert json.loads(data)["frames"][1]["boxes"][1]["xyxy"] == [100.0, 100.0, 200.0, 150.0]


def test_saving_the_same_version_twice_is_idempotent_but_never_overwrites(store: ObjectStore) -> None:
    first = save_annotations(store, make_annotations(1))
    again = save_annotations(store, make_annotations(1))
    assert again.written is False
    assert again.sha256 == first.sha256
    changed = make_annotations(1)
    changed.frames[0].boxes.clear()
    with pytest.raises(ObjectExistsError):
        save_annotations(store, changed)
    assert load_annotations(store, CLIP, 1) == make_annotations(1)


def test_invalid_annotations_are_refused_before_writing(store: ObjectStore) -> None:
    bad = make_annotations(1)
    bad.frames[0].boxes[0] = Box(label="person", xyxy=(10.0, 10.0, 5.0, 20.0), score=0.5)
    with pytest.raises(AnnotationValidationError, match=r"v0001\.json.*frames\[0\]\.boxes\[0\]\.xyxy"):
        save_annotations(store, bad)
    assert list_versions(store, CLIP) == []


def test_load_checks_the_file_content(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError, match=CLIP):
        load_annotations(store, CLIP)
    store.write_bytes(f"annotations/{CLIP}/v0001.json", b'{"schema": "x"}')
    with pytest.raises(AnnotationValidationError, match=r"v0001\.json"):
        load_annotations(store, CLIP)
    wrong = make_annotations(2)
    store.write_bytes(f"annotations/{CLIP}/v0003.json", wrong.to_json_bytes())
    with pytest.raises(AnnotationValidationError, match="holds"):
        load_annotations(store, CLIP, 3)


def test_coco_export_loads_in_pycocotools(tmp_path: Path) -> None:
    other = make_annotations()
    other.clip_id = "0000000000000001-0000000"
    doc = to_coco([make_annotations(), other], classes=CLASSES)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 8
    assert len(coco.getAnnIds()) == 8
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    first = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    assert first["bbox"] == [10.0, 20.0, 40.0, 70.0]
    assert first["category_id"] == 1
    assert first["track_id"] == 1
    image = coco.loadImgs([1])[0]
    assert image["file_name"] == f"clips/{CLIP}/frames/000000.jpg"
    empty_images = [i for i in coco.getImgIds() if not coco.getAnnIds(imgIds=[i])]
    assert len(empty_images) == 2


def test_coco_refuses_unknown_labels() -> None:
    with pytest.raises(ValueError, match="not one of the dataset classes"):
        to_coco([make_annotations()], classes=["person"])


def test_xyxy_to_xywh() -> None:
    assert xyxy_to_xywh([1, 2, 4, 8]) == [1.0, 2.0, 3.0, 6.0]
