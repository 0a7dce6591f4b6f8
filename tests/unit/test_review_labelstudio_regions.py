"""Our labels as Label Studio ``VideoRectangle`` regions and back: frame alignment and interpolation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dataengine.errors import AnnotationValidationError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.review.platforms.labelstudio_regions import (
    box_at,
    label_config,
    prediction_result,
    result_to_annotations,
)

CLASSES = ["person", "bed", "wheelchair"]
W, H, FPS = 200, 100, 25.0


def _exported() -> ClipAnnotations:
    frames = [
        Frame(0, "frames/000000.jpg", W, H, [Box("person", (20.0, 10.0, 60.0, 90.0), track=3, score=0.9)]),
        Frame(
            12,
            "frames/000012.jpg",
            W,
            H,
            [
                Box("person", (40.0, 10.0, 80.0, 90.0), track=3, score=0.8),
                Box("bed", (100.0, 50.0, 180.0, 100.0), track=5, score=0.7),
            ],
        ),
        Frame(24, "frames/000024.jpg", W, H, []),
    ]
    return ClipAnnotations(
        clip_id="0123456789abcdef-0000000", version=1, source="autolabel", classes=CLASSES, frames=frames
    )


def _region(result: list[dict[str, Any]], region_id: str) -> dict[str, Any]:
    return next(r for r in result if r["id"] == region_id)


def test_keyframes_are_one_based_frames_at_clip_time() -> None:
    result = prediction_result(_exported(), fps=FPS, n_frames=50)
    person = _region(result, "dt3")
    assert [(k["frame"], k["time"], k["enabled"]) for k in person["value"]["sequence"]] == [
        (1, 0.0, True),  # clip frame 0 is Label Studio frame 1; the track lives on to frame 12
        (13, 12 / FPS, False),  # ... and ends there: it is not on frame 24
    ]
    assert (
        person["value"]["sequence"][0] | {"x": 10.0, "y": 10.0, "width": 20.0, "height": 80.0}
        == person["value"]["sequence"][0]
    )
    assert (person["value"]["framesCount"], person["value"]["duration"]) == (50, 2.0)
    assert person["type"] == "videorectangle"
    assert person["value"]["labels"] == ["person"]
    assert [k["frame"] for k in _region(result, "dt5")["value"]["sequence"]] == [13]


def test_prediction_round_trip_gives_the_exported_labels_back() -> None:
    exported = _exported()
    result = prediction_result(exported, fps=FPS, n_frames=50)
    reviewed = result_to_annotations(result, exported=exported, source_name="task 1")
    assert [f.boxes for f in reviewed.frames] == [f.boxes for f in exported.frames]


def test_interpolated_and_ended_regions() -> None:
    keyframes = [(1, True, (0.0, 0.0, 10.0, 10.0)), (11, False, (10.0, 0.0, 10.0, 10.0))]
    assert box_at(keyframes, 6) == pytest.approx((5.0, 0.0, 10.0, 10.0))
    assert box_at(keyframes, 11) == (10.0, 0.0, 10.0, 10.0)
    assert box_at(keyframes, 12) is None  # disabled at its last keyframe: gone afterwards
    assert box_at(keyframes, 0) is None  # before the first keyframe
    assert box_at([(1, True, (1.0, 1.0, 2.0, 2.0))], 40) == (1.0, 1.0, 2.0, 2.0)  # lives on to the end


def test_a_reviewer_keyframe_lands_on_the_right_clip_frame() -> None:
    exported = _exported()
    result = prediction_result(exported, fps=FPS, n_frames=50)
    added = copy.deepcopy(_region(result, "dt5"))
    added["id"] = "Xk3s9"
    added["value"]["labels"] = ["wheelchair"]
    # Label Studio frame 25 is clip frame 24; frame 24 would be clip frame 23, which was not exported.
    added["value"]["sequence"] = [
        {"frame": 24, "enabled": False, "x": 0, "y": 0, "width": 5, "height": 5},
        {"frame": 25, "enabled": False, "x": 50, "y": 50, "width": 25, "height": 50},
    ]
    reviewed = result_to_annotations([*result, added], exported=exported, source_name="task 1")
    (box,) = reviewed.frames[2].boxes
    assert box.xyxy == pytest.approx((100.0, 50.0, 150.0, 100.0))
    assert (box.label, box.track, box.origin, box.score) == ("wheelchair", 6, "human", None)


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"not": "a list"}, "$.result"),
        ([{"type": "videorectangle", "id": "a", "value": {"labels": ["person"]}}], "$.result[0].value"),
        (
            [
                {
                    "type": "videorectangle",
                    "id": "a",
                    "value": {"labels": ["person"], "sequence": [{"frame": 1}]},
                }
            ],
            "$.result[0].value.sequence[0]",
        ),
        (
            [
                {
                    "type": "videorectangle",
                    "id": "a",
                    "value": {
                        "labels": ["person"],
                        "sequence": [{"frame": 0, "x": 1, "y": 1, "width": 1, "height": 1}],
                    },
                }
            ],
            "frames count from 1",
        ),
        (
            [
                {
                    "type": "videorectangle",
                    "id": "a",
                    "value": {
                        "labels": ["tree"],
                        "sequence": [{"frame": 1, "x": 1, "y": 1, "width": 1, "height": 1}],
                    },
                }
            ],
            "'tree' is not one of the exported classes",
        ),
    ],
)
def test_malformed_results_are_refused(result: Any, field: str) -> None:
    with pytest.raises(AnnotationValidationError) as caught:
        result_to_annotations(result, exported=_exported(), source_name="task 9 (clip c)")
    assert str(caught.value).startswith("task 9 (clip c)")
    assert field in str(caught.value)


def test_label_config_names_every_class() -> None:
    config = label_config(["person", 'odd "name"'])
    assert '<VideoRectangle name="box" toName="video"/>' in config
    assert 'framerate="$fps"' in config
    assert "<Label value='odd \"name\"'/>" in config
