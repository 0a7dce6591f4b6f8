"""Our labels to Encord and back, through the real ``encord`` SDK classes, offline."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from encord.objects import LabelRowV2, Object, OntologyStructure, Shape
from encord.objects.attributes import TextAttribute

from dataengine.errors import AnnotationValidationError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.review.platforms import encord_labels as labels
from dataengine.review.platforms.encord import payload_to_annotations

CLASSES = ["person", "bed", "wheelchair"]
W, H = 320, 240
CLIP = "0123456789abcdef-0000300"


def _exported() -> ClipAnnotations:
    frames = [
        Frame(
            0,
            "frames/000000.jpg",
            W,
            H,
            [
                Box("person", (32.0, 24.0, 96.0, 168.0), track=4, score=0.91),
                Box("bed", (160.0, 120.0, 300.0, 220.0), track=7, score=0.66),
            ],
        ),
        Frame(5, "frames/000005.jpg", W, H, [Box("person", (40.0, 24.0, 104.0, 168.0), track=4, score=0.87)]),
        Frame(10, "frames/000010.jpg", W, H, []),
    ]
    return ClipAnnotations(
        clip_id=CLIP,
        version=1,
        source="autolabel",
        classes=CLASSES,
        frames=frames,
        producer={"models": ["m-1"]},
    )


def _row(exported: ClipAnnotations) -> dict[str, Any]:
    """The pre-label row as Encord would hand it back: a 20-frame 10 fps video titled after the clip."""
    structure = labels.ontology_structure(CLASSES)
    row = LabelRowV2.from_media_metadata(
        labels.offline_ontology(structure), labels.video_metadata(fps=10.0, n_frames=20, width=W, height=H)
    )
    labels.add_prelabels(row, structure, exported)
    doc = row.to_encord_dict()
    doc["data_title"] = labels.data_title(CLIP)
    parsed: dict[str, Any] = json.loads(json.dumps(doc))
    return parsed


def _objects(doc: dict[str, Any], frame: int) -> list[dict[str, Any]]:
    unit = next(iter(doc["data_units"].values()))
    objects: list[dict[str, Any]] = unit["labels"][str(frame)]["objects"]
    return objects


def test_ontology_has_a_box_object_per_class_with_a_static_track_id() -> None:
    structure = labels.ontology_structure(CLASSES)
    assert [obj.name for obj in structure.objects] == CLASSES
    assert {obj.shape for obj in structure.objects} == {Shape.BOUNDING_BOX}
    for obj in structure.objects:
        (attribute,) = obj.attributes
        assert isinstance(attribute, TextAttribute)
        assert (attribute.name, attribute.dynamic) == ("track_id", False)
    again = OntologyStructure.from_dict(json.loads(json.dumps(structure.to_dict())))
    assert again.to_dict() == structure.to_dict()
    assert labels.ontology_structure(CLASSES).to_dict() == structure.to_dict()  # stable feature hashes


def test_prelabels_are_one_object_per_track_with_per_frame_confidence() -> None:
    doc = _row(_exported())
    frame0, frame5 = _objects(doc, 0), _objects(doc, 5)
    person0 = next(o for o in frame0 if o["name"] == "person")
    person5 = frame5[0]
    assert person0["objectHash"] == person5["objectHash"]  # one ObjectInstance for track 4
    assert len({o["objectHash"] for o in frame0}) == 2
    assert (person0["confidence"], person5["confidence"]) == (0.91, 0.87)
    assert all(o["manualAnnotation"] is False for o in frame0 + frame5)
    assert person0["boundingBox"] == pytest.approx({"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.6})
    answers = {h: a["classifications"][0]["answers"] for h, a in doc["object_answers"].items()}
    assert answers[person0["objectHash"]] == "4"
    assert "10" not in next(iter(doc["data_units"].values()))["labels"]


def test_round_trip_through_the_sdk_gives_the_exported_labels_back() -> None:
    exported = _exported()
    reviewed = payload_to_annotations(
        json.dumps(_row(exported)).encode(), exported=exported, source_name="row"
    )
    assert [f.index for f in reviewed.frames] == [0, 5, 10]
    for before, after in zip(exported.frames, reviewed.frames, strict=True):
        assert sorted(after.boxes, key=lambda b: b.label) == sorted(before.boxes, key=lambda b: b.label)
    assert reviewed.frames[0].boxes[0].origin == "detector"


def test_reviewer_edits_come_back_in_pixels_as_human_boxes() -> None:
    exported = _exported()
    doc = _row(exported)
    person5 = _objects(doc, 5)[0]
    person5.update(boundingBox={"x": 0.25, "y": 0.1, "w": 0.2, "h": 0.5}, manualAnnotation=True)
    person5["lastEditedBy"] = "ann-7@example.com"
    bed = next(o for o in _objects(doc, 0) if o["name"] == "bed")
    _objects(doc, 0).remove(bed)  # the reviewer deleted the bed
    added = copy.deepcopy(person5)
    added.update(objectHash="newObj01", name="wheelchair", value="wheelchair")
    added["featureHash"] = labels.feature_hash("obj", "wheelchair")
    added["boundingBox"] = {"x": 0.5, "y": 0.5, "w": 0.25, "h": 0.25}
    next(iter(doc["data_units"].values()))["labels"]["10"] = {"objects": [added], "classifications": []}
    doc["object_answers"].pop(bed["objectHash"], None)
    doc["object_answers"]["newObj01"] = {"objectHash": "newObj01", "classifications": []}
    reviewed = payload_to_annotations(json.dumps(doc).encode(), exported=exported, source_name="row")
    frame0, frame5, frame10 = reviewed.frames
    assert [b.label for b in frame0.boxes] == ["person"]
    assert frame0.boxes[0] == exported.frames[0].boxes[0]  # accepted: origin and score kept
    (moved,) = frame5.boxes
    assert moved.xyxy == pytest.approx((80.0, 24.0, 144.0, 144.0))
    assert (moved.track, moved.origin, moved.score) == (4, "human", None)
    (wheelchair,) = frame10.boxes
    assert wheelchair.xyxy == pytest.approx((160.0, 120.0, 240.0, 180.0))
    assert (wheelchair.label, wheelchair.track, wheelchair.origin) == ("wheelchair", 8, "human")


def test_rows_of_another_ontology_are_read_by_their_own_feature_hashes() -> None:
    structure = OntologyStructure()
    person = structure.add_object(name="person", shape=Shape.BOUNDING_BOX, feature_node_hash="uiPers01")
    person.add_attribute(TextAttribute, "track_id", feature_node_hash="uiTrk001")
    exported = _exported()
    exported.frames[0].boxes.pop()  # only the person track
    row = LabelRowV2.from_media_metadata(
        labels.offline_ontology(structure), labels.video_metadata(fps=10.0, n_frames=20, width=W, height=H)
    )
    labels.add_prelabels(row, structure, exported)
    doc = json.loads(json.dumps(row.to_encord_dict()))
    rebuilt = labels.structure_from_row(doc, source_name="row")
    assert [(o.name, o.feature_node_hash) for o in rebuilt.objects] == [("person", "uiPers01")]
    reviewed = payload_to_annotations(json.dumps(doc).encode(), exported=exported, source_name="row")
    assert [b.track for f in reviewed.frames for b in f.boxes] == [4, 4]
    assert isinstance(rebuilt.get_child_by_title("person", type_=Object), Object)


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (
            lambda d: _objects(d, 0)[0].update(boundingBox={"x": 0.9, "y": 0.1, "w": 0.5, "h": 0.1}),
            "boundingBox",
            "inside",
        ),
        (
            lambda d: _objects(d, 0)[0].update(boundingBox={"x": "a", "y": 0, "w": 1, "h": 1}),
            "boundingBox",
            "numbers",
        ),
        (lambda d: _objects(d, 0)[0].pop("boundingBox"), "boundingBox", "required"),
        (
            lambda d: _objects(d, 5)[0].update(featureHash="unknown1", name=None),
            "labels.5.objects[0]",
            "featureHash",
        ),
        (lambda d: d.pop("data_units"), "$.data_units", "one video"),
        (lambda d: next(iter(d["data_units"].values())).update(data_fps=0), "data_fps", "positive"),
    ],
)
def test_malformed_rows_are_refused_naming_the_source_and_field(edit: Any, field: str, problem: str) -> None:
    exported = _exported()
    doc = _row(exported)
    edit(doc)
    with pytest.raises(AnnotationValidationError) as caught:
        payload_to_annotations(
            json.dumps(doc).encode(), exported=exported, source_name=f"export.json (clip {CLIP})"
        )
    message = str(caught.value)
    assert message.startswith(f"export.json (clip {CLIP})")
    assert field in message
    assert problem in message


def test_a_box_on_a_frame_beyond_the_video_is_refused_by_the_sdk() -> None:
    exported = _exported()
    doc = _row(exported)
    unit = next(iter(doc["data_units"].values()))
    unit["labels"]["25"] = copy.deepcopy(unit["labels"]["5"])  # the video has 20 frames
    with pytest.raises(AnnotationValidationError, match="Encord SDK cannot read"):
        payload_to_annotations(json.dumps(doc).encode(), exported=exported, source_name="row")


def test_boxes_on_frames_that_were_not_exported_are_left_out() -> None:
    exported = _exported()
    doc = _row(exported)
    unit = next(iter(doc["data_units"].values()))
    unit["labels"]["3"] = copy.deepcopy(unit["labels"]["5"])  # an interpolated box between samples
    reviewed = payload_to_annotations(json.dumps(doc).encode(), exported=exported, source_name="row")
    assert [f.index for f in reviewed.frames] == [0, 5, 10]
    assert reviewed.n_boxes == exported.n_boxes


def test_clip_ids_from_data_titles() -> None:
    assert labels.clip_id_of_title(f"{CLIP}.mp4") == CLIP
    assert labels.clip_id_of_title(CLIP) == CLIP
    assert labels.data_title(CLIP) == f"{CLIP}.mp4"
