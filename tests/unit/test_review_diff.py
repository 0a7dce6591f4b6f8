"""The boxes-changed rule of review (docs/review.md) on hand-made annotation pairs."""

from __future__ import annotations

import pytest

from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.review.diff import BoxChanges, box_changes, frame_changes, review_quality
from dataengine.vision.boxes import box_iou as iou

CLASSES = ["person", "bed", "wheelchair"]


def _box(label: str, x1: float, y1: float, x2: float, y2: float, **kwargs: object) -> Box:
    return Box(label=label, xyxy=(x1, y1, x2, y2), **kwargs)  # type: ignore[arg-type]


def _clip(frames: dict[int, list[Box]], *, version: int = 1) -> ClipAnnotations:
    return ClipAnnotations(
        clip_id="0123456789abcdef-0000000",
        version=version,
        source="autolabel" if version == 1 else "review",
        classes=CLASSES,
        frames=[
            Frame(index=i, image=f"frames/{i:06d}.jpg", width=100, height=100, boxes=boxes)
            for i, boxes in frames.items()
        ],
    )


PERSON = _box("person", 10, 10, 30, 50, track=1, score=0.9)
BED = _box("bed", 50, 50, 90, 80, track=2, score=0.8)


def test_iou_values() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_identical_labels_change_nothing() -> None:
    before = _clip({0: [PERSON, BED], 1: [BED]})
    after = _clip({0: [BED, PERSON], 1: [BED]}, version=2)
    assert box_changes(before, after) == BoxChanges(accepted=3)
    assert box_changes(before, after).total == 0


def test_score_track_and_origin_do_not_count() -> None:
    accepted = _box("person", 10, 10, 30, 50, track=9, score=None, origin="human")
    assert frame_changes([PERSON], [accepted]).total == 0


def test_one_moved_one_added_one_deleted_one_relabelled() -> None:
    before = _clip({0: [PERSON], 1: [BED], 2: [_box("person", 0, 0, 20, 20)]})
    moved = _box("person", 12, 10, 32, 50)  # IoU 36/44 ~= 0.82: the same object, moved
    wheelchair = _box("wheelchair", 60, 60, 80, 80)
    relabelled = _box("wheelchair", 0, 0, 20, 20)
    after = _clip({0: [moved], 1: [BED, wheelchair], 2: [relabelled]}, version=2)
    changes = box_changes(before, after)
    assert changes == BoxChanges(added=1, deleted=0, moved=1, relabelled=1, accepted=1)
    assert changes.total == 3
    deleted = box_changes(before, _clip({0: [PERSON], 1: [], 2: [_box("person", 0, 0, 20, 20)]}, version=2))
    assert deleted == BoxChanges(deleted=1, accepted=2)
    assert deleted.to_dict() == {
        "added": 0,
        "deleted": 1,
        "moved": 0,
        "relabelled": 0,
        "accepted": 2,
        "total": 1,
    }


def test_small_nudge_below_threshold_is_unchanged() -> None:
    nudged = _box("person", 11, 10, 31, 50)  # IoU 19/21 ~= 0.905 >= 0.9
    assert frame_changes([PERSON], [nudged]) == BoxChanges(accepted=1)
    moved = _box("person", 11.2, 10, 31.2, 50)  # IoU 18.8/21.2 ~= 0.887 < 0.9
    assert frame_changes([PERSON], [moved]) == BoxChanges(moved=1)


def test_far_move_counts_as_deleted_and_added() -> None:
    far = _box("person", 60, 10, 80, 50)  # no overlap: not the same box
    assert frame_changes([PERSON], [far]) == BoxChanges(added=1, deleted=1)


def test_same_label_is_matched_before_relabelled() -> None:
    bed_here = _box("bed", 10, 10, 30, 50)
    person_shifted = _box("person", 10.5, 10, 30.5, 50)  # IoU 0.95 < bed_here's 1.0, but the same label
    changes = frame_changes([PERSON], [bed_here, person_shifted])
    assert changes == BoxChanges(added=1, accepted=1)


def test_each_box_is_matched_once() -> None:
    twin = _box("person", 10, 10, 30, 50)
    assert frame_changes([PERSON], [PERSON, twin]) == BoxChanges(added=1, accepted=1)
    assert frame_changes([PERSON, twin], [PERSON]) == BoxChanges(deleted=1, accepted=1)


def test_zero_box_frames() -> None:
    empty_before = _clip({0: [], 1: []})
    empty_after = _clip({0: [], 1: []}, version=2)
    assert box_changes(empty_before, empty_after).total == 0
    assert box_changes(empty_before, _clip({0: [PERSON], 1: []}, version=2)) == BoxChanges(added=1)
    assert box_changes(_clip({0: [PERSON, BED]}), _clip({0: []}, version=2)) == BoxChanges(deleted=2)


def test_frame_on_one_side_only_counts_its_boxes() -> None:
    before = _clip({0: [PERSON], 1: [BED]})
    after = _clip({0: [PERSON]}, version=2)
    assert box_changes(before, after) == BoxChanges(deleted=1, accepted=1)
    assert box_changes(after, before) == BoxChanges(added=1, accepted=1)
    assert box_changes(_clip({}), _clip({}, version=2)).total == 0


def test_precision_recall_and_quality_record() -> None:
    before = _clip({0: [PERSON, BED], 1: [_box("person", 0, 0, 20, 20)], 2: []})
    after = _clip(
        {0: [PERSON, _box("bed", 54, 50, 94, 80)], 1: [], 2: [_box("wheelchair", 1, 1, 9, 9)]}, version=2
    )
    changes = box_changes(before, after)
    assert changes == BoxChanges(accepted=1, moved=1, deleted=1, added=1)
    assert (changes.before, changes.after) == (3, 3)
    assert changes.precision == pytest.approx(2 / 3)
    assert changes.recall == pytest.approx(2 / 3)
    quality = review_quality(changes, models=["m-1"], seconds=12.5)
    assert quality == {
        "accepted": 1,
        "moved": 1,
        "deleted": 1,
        "added": 1,
        "relabelled": 0,
        "prelabels": 3,
        "reviewed_boxes": 3,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "edit_rate": pytest.approx(1.0),
        "models": ["m-1"],
        "seconds": 12.5,
    }
    empty = BoxChanges()
    assert (empty.precision, empty.recall) == (None, None)
    assert review_quality(empty, models=[], seconds=None)["edit_rate"] is None
