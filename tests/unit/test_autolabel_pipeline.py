"""The autolabel pipeline without models: WBF, the two-pass tracker, hindsight, and whole clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dataengine.autolabel.ensemble import FusionParams, class_thresholds, fuse_frame
from dataengine.autolabel.hindsight import HindsightParams, apply_hindsight, fill_gaps, majority_label, smooth
from dataengine.autolabel.labelling import FrameSize
from dataengine.autolabel.pipeline import AutolabelParams, label_clip
from dataengine.autolabel.run import frame_workers
from dataengine.autolabel.tracks import TrackerParams, track_detections
from dataengine.config import Settings
from dataengine.formats import ClipAnnotations
from dataengine.vision import Detections
from dataengine.vision.tracks import Track

CLASSES = ("person", "bed", "wheelchair")


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """Detections from ``(x1, y1, x2, y2, score, label)`` rows."""
    array = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(
        boxes_xyxy=array[:, :4].astype(np.float32),
        scores=array[:, 4].astype(np.float32),
        labels=array[:, 5].astype(np.int64),
    )


NONE = dets()


# Weighted Boxes Fusion ---------------------------------------------------------------------------


def test_wbf_averages_agreeing_boxes_by_score_and_model_weight() -> None:
    a = dets((10, 10, 50, 50, 0.9, 0))
    b = dets((14, 10, 54, 50, 0.6, 0))
    fused = fuse_frame([a, b], FusionParams(weights=((2.0, 1.0),)))
    # Member weights: 0.9 * 2 = 1.8 and 0.6 * 1 = 0.6, so x1 = (10 * 1.8 + 14 * 0.6) / 2.4 = 11.0.
    assert fused.boxes_xyxy[0].tolist() == pytest.approx([11.0, 10.0, 51.0, 50.0])
    assert len(fused) == 1
    # Score: (0.9 * 2 + 0.6 * 1) / (2 + 1) = 0.8.
    assert fused.scores.tolist() == pytest.approx([0.8])
    assert fused.labels.tolist() == [0]


def test_wbf_discounts_a_box_only_one_model_sees_and_keeps_classes_apart() -> None:
    a = dets((10, 10, 50, 50, 0.9, 0), (100, 100, 140, 160, 0.8, 1))
    b = dets((10, 10, 50, 50, 0.7, 1))  # same place, other class: not fused with a's person
    fused = fuse_frame([a, b], FusionParams(weights=((1.0, 1.0),)))
    got = sorted(zip(fused.labels.tolist(), fused.scores.tolist(), fused.boxes_xyxy.tolist(), strict=True))
    assert [(label, pytest.approx(score)) for label, score, _ in got] == [
        (0, pytest.approx(0.45)),
        (1, pytest.approx(0.35)),
        (1, pytest.approx(0.4)),
    ]
    assert got[2][2] == pytest.approx([100, 100, 140, 160])
    assert fused.scores.tolist() == sorted(fused.scores.tolist(), reverse=True)


def test_wbf_separates_distant_boxes_and_skips_low_scores() -> None:
    a = dets((0, 0, 20, 20, 0.9, 0), (200, 0, 220, 20, 0.05, 0))
    b = dets((1, 0, 21, 20, 0.9, 0), (60, 60, 80, 80, 0.5, 0))
    fused = fuse_frame([a, b], FusionParams(weights=((1.0, 1.0),), skip_score=0.1))
    assert len(fused) == 2
    assert fused.boxes_xyxy[0].tolist() == pytest.approx([0.5, 0, 20.5, 20])
    assert fused.scores.tolist() == pytest.approx([0.9, 0.25])


def test_wbf_of_nothing_and_bad_parameters() -> None:
    assert len(fuse_frame([NONE, NONE], FusionParams(weights=((1.0, 1.0),)))) == 0
    with pytest.raises(ValueError, match="2 detection sets for 1 model weights"):
        fuse_frame([NONE, NONE], FusionParams(weights=((1.0,),)))
    with pytest.raises(ValueError, match="one > 0 per class"):
        FusionParams(weights=((0.0, 0.0),))
    with pytest.raises(ValueError, match=">= 0"):
        FusionParams(weights=((1.0, -1.0),))


def test_class_thresholds_default_and_unknown_names() -> None:
    assert class_thresholds(CLASSES, {"bed": 0.7}, 0.5).tolist() == [0.5, 0.7, 0.5]
    with pytest.raises(ValueError, match="unknown classes \\['cat'\\]"):
        class_thresholds(CLASSES, {"cat": 0.7}, 0.5)


# Tracking ----------------------------------------------------------------------------------------


def tracker_params(**kwargs: float) -> TrackerParams:
    return TrackerParams(high=np.full(len(CLASSES), 0.5), **kwargs)  # type: ignore[arg-type]


def ids_by_position(tracks: list[Track]) -> dict[int, dict[int, list[float]]]:
    """{track id: {position: box}}."""
    return {t.id: {p: b.tolist() for p, b in zip(t.positions, t.boxes, strict=True)} for t in tracks}


def test_two_objects_crossing_keep_their_ids() -> None:
    # A moves right and B moves left along the same row; they overlap completely at t = 5.
    frames = []
    for t in range(11):
        ax, bx = 10 + 10 * t, 110 - 10 * t
        frames.append(dets((ax, 50, ax + 30, 90, 0.9, 0), (bx, 52, bx + 30, 92, 0.9, 0)))
    tracks = track_detections(frames, tracker_params())
    assert [t.id for t in tracks] == [1, 2]
    by_id = ids_by_position(tracks)
    # Track 1 is the object that started on the left: it ends on the right.
    assert (by_id[1][0][0], by_id[1][10][0]) == (10, 110)
    assert (by_id[2][0][0], by_id[2][10][0]) == (110, 10)
    assert all(len(t) == 11 for t in tracks)


def test_low_score_boxes_extend_tracks_but_never_start_them() -> None:
    frames = [
        dets((10, 10, 50, 50, 0.9, 0)),
        dets((12, 10, 52, 50, 0.2, 0), (200, 100, 240, 140, 0.3, 0)),  # an occluded frame; a lone low box
        dets((14, 10, 54, 50, 0.9, 0)),
    ]
    (track,) = track_detections(frames, tracker_params())
    assert track.positions == [0, 1, 2]
    assert track.scores == pytest.approx([0.9, 0.2, 0.9])


def test_a_track_lost_for_longer_than_max_gap_ends() -> None:
    box = (10, 10, 50, 50, 0.9, 0)
    frames = [dets(box), NONE, NONE, dets(box)]
    assert [t.positions for t in track_detections(frames, tracker_params(max_gap=2))] == [[0, 3]]
    assert [t.positions for t in track_detections(frames, tracker_params(max_gap=1))] == [[0], [3]]


def test_tracking_nothing_gives_no_tracks() -> None:
    assert track_detections([], tracker_params()) == []
    assert track_detections([NONE, NONE], tracker_params()) == []


# Hindsight ---------------------------------------------------------------------------------------


def test_gap_filling_interpolates_linearly_in_frame_time() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 60.0, 40.0, 70.0]])
    # Positions 0 and 3 are sampled at frames 0 and 30; positions 1 and 2 at frames 5 and 20 (uneven).
    times = np.array([0.0, 5.0, 20.0, 30.0])
    positions, filled_boxes, filled = fill_gaps([0, 3], boxes, times, max_gap=2)
    assert positions.tolist() == [0, 1, 2, 3]
    assert filled.tolist() == [False, True, True, False]
    assert filled_boxes[1].tolist() == pytest.approx([5.0, 10.0, 15.0, 20.0])
    assert filled_boxes[2].tolist() == pytest.approx([20.0, 40.0, 30.0, 50.0])


def test_gaps_longer_than_k_stay_open() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [30.0, 0.0, 40.0, 10.0]])
    positions, _, filled = fill_gaps([0, 4], boxes, np.arange(5.0), max_gap=2)
    assert positions.tolist() == [0, 4]
    assert not filled.any()


def test_smoothing_removes_jitter_and_keeps_runs_apart() -> None:
    positions = np.array([0, 1, 2, 3, 4, 10, 11])
    jitter = np.array([0.0, 4.0, 0.0, 4.0, 0.0, 100.0, 100.0])
    boxes = np.stack([jitter, jitter, jitter + 10, jitter + 10], axis=1)
    smoothed = smooth(positions, boxes, sigma=1.0)
    assert np.ptp(smoothed[:5, 0]) < 2.0  # from 4 px peak to peak
    assert smoothed[5:, 0].tolist() == [100.0, 100.0]  # a 2-frame run is left as it is
    assert smooth(positions, boxes, sigma=0.0) is boxes


def test_majority_class_weighs_scores() -> None:
    track = Track(1)
    for position, (label, score) in enumerate([(0, 0.9), (2, 0.6), (2, 0.6), (0, 0.9), (1, 0.3)]):
        track.add(position, np.array([0.0, 0.0, 10.0, 10.0]), score, label)
    assert majority_label(track) == 0  # 1.8 against 1.2


def make_track(track_id: int, positions: list[int], score: float = 0.8, label: int = 0) -> Track:
    track = Track(track_id)
    for p in positions:
        track.add(p, np.array([10.0 + p, 10.0, 40.0 + p, 40.0]), score, label)
    return track


def test_short_tracks_are_dropped_and_the_rest_renumbered_and_rescored() -> None:
    tracks = [make_track(1, [0, 1]), make_track(2, [2, 3, 4, 5], score=0.6)]
    tracks[1].scores[0] = 1.0  # mean 0.7
    boxes = apply_hindsight(tracks, list(range(6)), HindsightParams(min_track_frames=3, smoothing=0))
    assert {b.track for b in boxes} == {1}
    assert [b.position for b in boxes] == [2, 3, 4, 5]
    assert all(b.score == pytest.approx(0.7) for b in boxes)
    kept = apply_hindsight(tracks, list(range(6)), HindsightParams(min_track_frames=2, smoothing=0))
    assert {b.track for b in kept} == {1, 2}


# Whole clips -------------------------------------------------------------------------------------


def sizes(n: int) -> list[FrameSize]:
    return [FrameSize(5 * i, 320, 240) for i in range(n)]


def params(**kwargs: object) -> AutolabelParams:
    return AutolabelParams(classes=CLASSES, **kwargs)  # type: ignore[arg-type]


def test_a_clip_without_detections_gets_valid_empty_frames() -> None:
    frames = label_clip([NONE] * 4, sizes(4), params(), n_models=2)
    assert [f.index for f in frames] == [0, 5, 10, 15]
    assert all(f.boxes == [] for f in frames)
    doc = ClipAnnotations("0123456789abcdef-0000000", 1, "autolabel", list(CLASSES), frames)
    assert ClipAnnotations.from_dict(doc.to_dict()).frames == frames


def test_a_clip_is_tracked_gap_filled_and_flicker_removed() -> None:
    moving = [(10.0 + 10 * t, 20.0, 60.0 + 10 * t, 80.0, 0.9, 0) for t in range(8)]
    fused = [dets(row) for row in moving]
    fused[3] = NONE  # a missed frame: filled
    fused[5] = dets(moving[5], (250, 150, 300, 200, 0.95, 1))  # a one-frame false positive: dropped
    fused[6] = dets((*moving[6][:4], 0.9, 2))  # a class flip: the majority wins
    frames = label_clip(fused, sizes(8), params(smoothing=0.0), n_models=2)
    boxes = [box for f in frames for box in f.boxes]
    assert len(boxes) == 8
    assert {b.track for b in boxes} == {1}
    assert {b.label for b in boxes} == {"person"}
    assert [b.origin for b in boxes].count("interpolated") == 1
    assert frames[3].boxes[0].origin == "interpolated"
    assert frames[3].boxes[0].xyxy == pytest.approx((40.0, 20.0, 90.0, 80.0))
    assert {b.origin for b in boxes} == {"ensemble", "interpolated"}
    assert all(b.score == pytest.approx(0.9) for b in boxes)


def test_a_track_under_its_class_threshold_is_dropped() -> None:
    fused = [dets((10, 10, 50, 50, 0.6, 1)) for _ in range(4)]
    assert label_clip(fused, sizes(4), params(class_thresholds={"bed": 0.7}), n_models=1) == label_clip(
        [NONE] * 4, sizes(4), params(), n_models=1
    )
    kept = label_clip(fused, sizes(4), params(class_thresholds={"person": 0.7}), n_models=1)
    assert [b.origin for f in kept for b in f.boxes] == ["detector"] * 4


def test_params_come_from_the_settings() -> None:
    settings = Settings(
        autolabel_model_weights=[2.0, 1.0],
        autolabel_class_thresholds={"bed": 0.8},
        autolabel_gap_frames=6,
        autolabel_min_track_frames=5,
        autolabel_smoothing=2.5,
    )
    got = AutolabelParams.from_settings(settings, classes=CLASSES, n_models=2)
    assert (got.weights, got.gap_frames, got.min_track_frames, got.smoothing) == ((2.0, 1.0), 6, 5, 2.5)
    assert got.to_producer()["class_thresholds"] == {"person": 0.5, "bed": 0.8, "wheelchair": 0.5}
    with pytest.raises(ValueError, match="2 weight\\(s\\) for 3 autolabel model\\(s\\)"):
        AutolabelParams.from_settings(settings, classes=CLASSES, n_models=3)


def test_frame_workers_leave_a_busy_cpu_to_the_forward_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAENGINE_AUTOLABEL_WORKERS", raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert frame_workers(Settings(), cpu) == 0  # the default, with no core to spare
    assert frame_workers(Settings(), cuda) == 1  # the GPU runs the model: decode alongside
    assert frame_workers(Settings(autolabel_workers=2), cpu) == 2  # set explicitly: as asked
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert frame_workers(Settings(), cpu) == 1  # spare cores: the default worker
