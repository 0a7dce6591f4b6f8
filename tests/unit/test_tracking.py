"""The IoU tracker: stable ids through motion, new ids for new objects, gaps, classes, empty frames."""

from __future__ import annotations

import time

import numpy as np
import pytest
from benchmarks.iou_tracker import IoUTracker, track_frames

from dataengine.vision.boxes import clip_boxes_xyxy, greedy_match, pairwise_iou


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def labels(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


NONE = (boxes(), labels())


def test_track_keeps_its_id_while_the_object_moves() -> None:
    frames = [(boxes((10 + 5 * t, 10, 60 + 5 * t, 60)), labels(0)) for t in range(10)]
    ids = track_frames(frames, iou_threshold=0.3)
    assert [int(i[0]) for i in ids] == [1] * 10


def test_two_objects_keep_their_ids_whatever_the_detection_order() -> None:
    tracker = IoUTracker(iou_threshold=0.3)
    first = tracker.update(boxes((0, 0, 20, 20), (100, 100, 140, 140)), labels(0, 0))
    second = tracker.update(boxes((102, 101, 142, 141), (1, 1, 21, 21)), labels(0, 0))
    assert first.tolist() == [1, 2]
    assert second.tolist() == [2, 1]


def test_new_object_gets_a_new_id_and_ids_are_never_reused() -> None:
    tracker = IoUTracker(iou_threshold=0.3, max_gap=0)
    assert tracker.update(boxes((0, 0, 20, 20)), labels(0)).tolist() == [1]
    assert tracker.update(boxes((0, 0, 20, 20), (50, 50, 80, 80)), labels(0, 0)).tolist() == [1, 2]
    tracker.update(*NONE)
    # Both tracks ended (max_gap 0); the same places now start tracks 3 and 4.
    assert tracker.update(boxes((0, 0, 20, 20), (50, 50, 80, 80)), labels(0, 0)).tolist() == [3, 4]
    assert tracker.n_tracks == 4


def test_a_box_moving_too_far_starts_a_new_track() -> None:
    ids = track_frames(
        [(boxes((0, 0, 20, 20)), labels(0)), (boxes((15, 15, 35, 35)), labels(0))], iou_threshold=0.3
    )
    assert [i.tolist() for i in ids] == [[1], [2]]


@pytest.mark.parametrize(
    ("missing", "max_gap", "same_track"), [(1, 1, True), (2, 2, True), (3, 2, False), (1, 0, False)]
)
def test_a_track_survives_gaps_up_to_max_gap(missing: int, max_gap: int, same_track: bool) -> None:
    seen = (boxes((10, 10, 50, 50)), labels(2))
    frames = [seen] + [NONE] * missing + [seen]
    ids = track_frames(frames, max_gap=max_gap)
    assert ids[0].tolist() == [1]
    assert all(i.size == 0 for i in ids[1:-1])
    assert ids[-1].tolist() == ([1] if same_track else [2])


def test_classes_are_tracked_separately() -> None:
    tracker = IoUTracker(iou_threshold=0.3)
    assert tracker.update(boxes((10, 10, 50, 50)), labels(0)).tolist() == [1]
    # Same place, other class: a new track, and the person's track is not stolen.
    assert tracker.update(boxes((10, 10, 50, 50), (11, 11, 51, 51)), labels(1, 0)).tolist() == [2, 1]
    assert tracker.update(boxes((12, 12, 52, 52)), labels(1)).tolist() == [2]


def test_empty_frames_and_an_empty_clip() -> None:
    assert track_frames([]) == []
    ids = track_frames([NONE, NONE])
    assert [i.shape for i in ids] == [(0,), (0,)]
    assert all(i.dtype == np.int64 for i in ids)
    tracker = IoUTracker()
    tracker.update(*NONE)
    assert tracker.update(boxes((0, 0, 5, 5)), labels(0)).tolist() == [1]


def test_reset_restarts_ids_at_one() -> None:
    tracker = IoUTracker()
    tracker.update(boxes((0, 0, 5, 5), (10, 10, 20, 20)), labels(0, 0))
    tracker.reset()
    assert tracker.update(boxes((0, 0, 5, 5)), labels(0)).tolist() == [1]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        IoUTracker(iou_threshold=0.0)
    with pytest.raises(ValueError, match="max_gap"):
        IoUTracker(max_gap=-1)
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        IoUTracker().update(boxes((0, 0, 1, 1), (0, 0, 2, 2)), labels(0))


def test_pairwise_iou_values() -> None:
    iou = pairwise_iou(
        boxes((0, 0, 10, 10), (5, 5, 15, 15)), boxes((0, 0, 10, 10), (20, 20, 30, 30), (5, 0, 15, 10))
    )
    assert iou.shape == (2, 3)
    assert iou[0].tolist() == pytest.approx([1.0, 0.0, 50 / 150])
    assert iou[1, 0] == pytest.approx(25 / 175)
    assert pairwise_iou(boxes(), boxes((0, 0, 1, 1))).shape == (0, 1)
    # A degenerate box has IoU 0 with everything, itself included.
    assert pairwise_iou(boxes((3, 3, 3, 3)), boxes((3, 3, 3, 3))).tolist() == [[0.0]]


def test_greedy_match_picks_the_best_pairs_once() -> None:
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols = greedy_match(iou, iou_threshold=0.5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0)]
    rows, cols = greedy_match(np.array([[0.6, 0.0], [0.7, 0.55]]), iou_threshold=0.5)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(1, 0)]
    rows, _ = greedy_match(np.zeros((0, 3)), iou_threshold=0.5)
    assert rows.size == 0


def test_clip_boxes_to_the_frame_and_flag_degenerate_ones() -> None:
    clipped, keep = clip_boxes_xyxy(
        boxes((-5, -5, 10, 10), (90, 40, 120, 60), (100, 10, 130, 20), (5, 5, 5.5, 30), (np.nan, 0, 1, 1)),
        width=100,
        height=50,
    )
    assert clipped[0].tolist() == [0, 0, 10, 10]
    assert clipped[1].tolist() == [90, 40, 100, 50]
    assert keep.tolist() == [True, True, False, False, False]


def test_tracker_speed_many_objects() -> None:
    """Post-processing must stay cheap next to the detector (performance-anchors §4: 10^4-10^5 fps)."""
    rng = np.random.default_rng(0)
    n_objects, n_frames = 30, 300
    starts = rng.uniform(0, 1000, size=(n_objects, 2))
    frames = []
    for t in range(n_frames):
        top_left = starts + 2.0 * t
        frames.append((np.hstack([top_left, top_left + 40]), np.zeros(n_objects, dtype=np.int64)))
    started = time.perf_counter()
    ids = track_frames(frames, iou_threshold=0.3)
    fps = n_frames / (time.perf_counter() - started)
    assert len(set(ids[-1].tolist())) == len(set(ids[0].tolist()))
    assert set(ids[-1].tolist()) == set(ids[0].tolist())
    assert fps > 500, f"tracker ran at {fps:.0f} frames/s with {n_objects} objects"
