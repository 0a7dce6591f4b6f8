"""The ensemble: fusion through ensemble-boxes, per-class member weights, dropping weak members, and
hindsight recovery of the tracks the strongest member sees, on hand-made detections."""

from __future__ import annotations

import numpy as np
import pytest
from ensemble_boxes import weighted_boxes_fusion

from dataengine.autolabel.ensemble import CONF_TYPES, ConfType, FusionParams, fuse_frame, strongest
from dataengine.autolabel.labelling import FrameSize
from dataengine.autolabel.members import MemberQuality, equal_plan, plan_ensemble, quality_from_metrics
from dataengine.autolabel.pipeline import AutolabelParams, fuse, label_clip, strongest_view
from dataengine.config import Settings
from dataengine.vision import Detections

CLASSES = ("person", "bed", "wheelchair")
W, H = 320, 240


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """Detections from ``(x1, y1, x2, y2, score, label)`` rows."""
    array = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(
        array[:, :4].astype(np.float32), array[:, 4].astype(np.float32), array[:, 5].astype(np.int64)
    )


def random_frame(rng: np.random.Generator, n: int) -> Detections:
    """``n`` random boxes inside a W x H frame around a few shared centres, so models' boxes cluster."""
    centres = np.array([[60, 60], [160, 120], [250, 180], [100, 190]], dtype=np.float64)
    picked = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    half = rng.uniform(10, 40, (n, 2))
    boxes = np.clip(np.hstack([picked - half, picked + half]), 0, [W, H, W, H])
    return Detections(
        boxes.astype(np.float32), rng.uniform(0.05, 1.0, n).astype(np.float32), rng.integers(0, 3, n)
    )


@pytest.mark.parametrize("conf_type", CONF_TYPES)
def test_fusion_equals_ensemble_boxes_on_random_frames(conf_type: ConfType) -> None:
    rng = np.random.default_rng(7)
    weights = (1.0, 0.6, 0.3)
    for _ in range(25):
        per_model = [random_frame(rng, int(rng.integers(0, 9))) for _ in weights]
        ours = fuse_frame(per_model, FusionParams((weights,), iou_threshold=0.55, conf_type=conf_type))
        scale = np.array([W, H, W, H], dtype=np.float64)
        boxes, scores, labels = weighted_boxes_fusion(
            [(d.boxes_xyxy / scale).tolist() for d in per_model],
            [d.scores.tolist() for d in per_model],
            [d.labels.tolist() for d in per_model],
            weights=list(weights),
            iou_thr=0.55,
            conf_type=conf_type,
        )
        theirs = sorted(
            zip(
                labels.astype(int).tolist(),
                np.round(scores, 4).tolist(),
                (boxes * scale).tolist(),
                strict=True,
            )
        )
        mine = sorted(
            zip(
                ours.labels.tolist(), np.round(ours.scores, 4).tolist(), ours.boxes_xyxy.tolist(), strict=True
            )
        )
        assert [label for label, _, _ in mine] == [label for label, _, _ in theirs]
        assert [score for _, score, _ in mine] == pytest.approx([score for _, score, _ in theirs], abs=2e-4)
        for (_, _, a), (_, _, b) in zip(mine, theirs, strict=True):
            assert a == pytest.approx(b, abs=0.05)


def test_a_box_only_the_strongest_member_sees_at_high_confidence_survives_fusion() -> None:
    # Three members; the first is the strongest for persons. Only it sees the person at x = 100.
    params = AutolabelParams(
        classes=CLASSES,
        weights=(1.0, 1.0, 1.0),
        class_weights={"person": (1.0, 0.9, 0.9)},
        score_threshold=0.5,
        min_track_frames=3,
    )
    person = (100, 50, 140, 130, 0.9, 0)
    bed = (200, 100, 300, 200, 0.8, 1)
    frames = [[dets(person, bed), dets(bed), dets(bed)] for _ in range(6)]
    fused = [fuse(f, params) for f in frames]
    # Fused, its score is discounted by the members that missed it (box_and_model_avg) ...
    person_scores = [float(d.scores[d.labels == 0][0]) for d in fused]
    assert person_scores == pytest.approx([0.9 / 2.8] * 6, abs=1e-4)
    # ... but the labelled clip keeps it on every frame, with the strongest member's confidence.
    sizes = [FrameSize(i, W, H) for i in range(6)]
    strong = [strongest_view(f, params) for f in frames]
    labelled = label_clip(fused, sizes, params, n_models=3, strong=strong)
    persons = [[b for b in frame.boxes if b.label == "person"] for frame in labelled]
    assert [len(p) for p in persons] == [1] * 6
    assert {p[0].track for p in persons} == {persons[0][0].track}
    assert persons[0][0].score == pytest.approx(0.9)
    assert persons[0][0].xyxy == pytest.approx((100, 50, 140, 130), abs=0.5)
    # The default settings keep it too.
    defaults = AutolabelParams.from_settings(Settings(), classes=CLASSES, n_models=3)
    assert defaults.strong_start == 0.8
    default_run = label_clip([fuse(f, defaults) for f in frames], sizes, defaults, n_models=3,
                             strong=[strongest_view(f, defaults) for f in frames])  # fmt: skip
    assert all(any(b.label == "person" for b in frame.boxes) for frame in default_run)


def test_per_class_weights_count_a_member_where_it_is_good() -> None:
    a = dets((10, 10, 50, 50, 0.8, 0), (100, 100, 160, 160, 0.8, 1))
    b = dets((20, 10, 60, 50, 0.8, 0), (110, 100, 170, 160, 0.8, 1))
    # a is the better person detector, b the better bed detector.
    params = FusionParams(((1.0, 0.25), (0.25, 1.0), (1.0, 1.0)), conf_type="max")
    fused = fuse_frame([a, b], params)
    person = fused.boxes_xyxy[fused.labels == 0][0].tolist()
    bed = fused.boxes_xyxy[fused.labels == 1][0].tolist()
    # Coordinates lean to the member weighted for the class: (10 * 0.8 + 20 * 0.2) / 1.0 = 12.
    assert person[0] == pytest.approx(12.0, abs=1e-3)
    assert bed[0] == pytest.approx(108.0, abs=1e-3)
    # A lone box keeps its member's class weight: a's bed counts a quarter, b's bed fully.
    lone = fuse_frame([dets((200, 10, 240, 50, 0.8, 1)), dets((10, 150, 50, 190, 0.8, 1))], params)
    assert sorted(lone.scores.tolist()) == pytest.approx([0.2, 0.8])
    assert strongest([a, b], params).labels.tolist() == [0, 1]
    assert strongest([a, b], params).boxes_xyxy[:, 0].tolist() == [10.0, 110.0]


def test_a_member_weighted_zero_for_a_class_takes_no_part_in_it() -> None:
    a = dets((10, 10, 50, 50, 0.9, 0))
    b = dets((10, 10, 50, 50, 0.9, 0), (100, 10, 140, 50, 0.9, 0))
    fused = fuse_frame([a, b], FusionParams(((1.0, 0.0),), conf_type="avg"))
    assert fused.boxes_xyxy.tolist() == [pytest.approx([10, 10, 50, 50], abs=1e-3)]
    assert fused.scores.tolist() == pytest.approx([0.9])


def test_a_bad_conf_type_is_a_value_error_not_an_exit() -> None:
    with pytest.raises(ValueError, match="conf_type must be one of"):
        FusionParams(((1.0, 1.0),), conf_type="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 detection sets for 3 model weights"):
        fuse_frame([dets(), dets()], FusionParams(((1.0, 1.0, 1.0),)))


# Members: dropping and weighting ------------------------------------------------------------------


def test_members_far_below_the_best_are_dropped_and_the_rest_weighted_per_class() -> None:
    quality = [
        MemberQuality("a", 0.67, {"person": 0.5, "bed": 0.4, "wheelchair": 0.2}, "heldout@1"),
        MemberQuality("b", 0.99, {"person": 0.8, "bed": 0.6, "wheelchair": None}, "heldout@1"),
        MemberQuality("c", 0.93, {"person": 0.4, "bed": 0.75, "wheelchair": None}, "heldout@1"),
    ]
    plan = plan_ensemble(quality, CLASSES, drop_margin=0.1)
    assert plan.model_ids == ("b", "c")
    assert list(plan.dropped) == ["a"]
    assert "0.670 is more than 0.10 below the best, 0.990" in plan.dropped["a"]
    assert plan.class_weights["person"] == (1.0, 0.5)
    assert plan.class_weights["bed"] == (0.8, 1.0)
    # No kept member has an AP for wheelchairs: the overall mAP@0.5 ratio stands in.
    assert plan.class_weights["wheelchair"] == pytest.approx((1.0, 0.9394), abs=1e-4)
    assert plan_ensemble(quality, CLASSES, drop_margin=0.5).model_ids == ("a", "b", "c")


def test_members_scored_on_different_validation_sets_do_not_compare() -> None:
    quality = [MemberQuality("a", 0.9, {}, "heldout@1"), MemberQuality("b", 0.8, {}, "heldout@2")]
    with pytest.raises(ValueError, match="different validation sets"):
        plan_ensemble(quality, CLASSES)


def test_quality_from_lineage_metrics() -> None:
    per_class = {
        "person": {"ap": 0.4, "ap50": 0.6, "support": 12},
        "bed": {"ap": None, "ap50": None, "support": 0},
        "wheelchair": 0.3,  # a record from before supports were kept: a bare AP@[.5:.95]
    }
    metrics = {"eval": {"map50": 0.8, "per_class": per_class}, "held_out": "h@1"}
    expected = MemberQuality("m", 0.8, {"person": 0.6, "bed": None, "wheelchair": 0.3}, "h@1")
    assert quality_from_metrics("m", metrics) == expected
    assert quality_from_metrics("m", {"train": {}}) is None


def test_a_plan_sets_one_row_or_a_row_per_class() -> None:
    base = AutolabelParams(classes=CLASSES, weights=(1.0, 1.0))
    fixed = base.with_plan(equal_plan(["a", "b"], CLASSES, [2.0, 1.0], "fixed"))
    assert (fixed.weights, dict(fixed.class_weights)) == ((2.0, 1.0), {})
    quality = [
        MemberQuality("a", 0.9, {"person": 0.9, "bed": 0.4}),
        MemberQuality("b", 0.85, {"person": 0.3, "bed": 0.8}),
    ]
    per_class = base.with_plan(plan_ensemble(quality, CLASSES))
    assert per_class.fusion().weights == ((1.0, 0.3333), (0.5, 1.0), (1.0, 0.9444))


# Hindsight recovery --------------------------------------------------------------------------------


def test_hindsight_keeps_a_strong_track_where_the_fused_score_dips() -> None:
    """The strongest member sees the person on all 10 frames; the two others lose it on frames 3-8, so
    its fused box falls under ``low_score`` there (and under the threshold elsewhere with equal weights).
    Without recovery the track would break after frame 2 and be too short to keep."""
    params = AutolabelParams(
        classes=CLASSES,
        weights=(1.0, 1.0, 1.0),
        class_weights={"person": (1.0, 0.5, 0.5)},
        score_threshold=0.4,
        low_score=0.15,
        gap_frames=2,
        min_track_frames=4,
        strong_start=2.0,
    )
    frames = []
    for t in range(10):
        x = 20 + 8 * t
        best = dets((x, 40, x + 40, 120, 0.25 if 3 <= t <= 8 else 0.9, 0))
        others = dets((x + 1, 40, x + 41, 120, 0.85, 0)) if t < 3 or t == 9 else dets()
        frames.append([best, others, others])
    fused = [fuse(f, params) for f in frames]
    assert all(not (d.scores >= 0.15).any() for d in fused[3:9])  # the dip: nothing left to track
    sizes = [FrameSize(2 * i, W, H) for i in range(10)]
    without = label_clip(fused, sizes, params, n_models=3)
    assert sum(len(f.boxes) for f in without) == 0
    strong = [strongest_view(f, params) for f in frames]
    labelled = label_clip(fused, sizes, params, n_models=3, strong=strong)
    boxes = [f.boxes for f in labelled]
    assert [len(b) for b in boxes] == [1] * 10
    assert {b[0].track for b in boxes} == {1}
    # Frame 5's box is the strongest member's own box there (smoothed), not a guess.
    assert boxes[5][0].xyxy[0] == pytest.approx(20 + 8 * 5, abs=1.0)
    # Its confidence: the strongest member's mean support, (4 * 0.9 + 6 * 0.25) / 10 = 0.51.
    assert boxes[0][0].score == pytest.approx(0.51, abs=1e-3)


def test_recovery_does_not_keep_what_the_strongest_member_rarely_sees() -> None:
    params = AutolabelParams(classes=CLASSES, weights=(1.0, 1.0), class_weights={"bed": (1.0, 1.0)},
                             score_threshold=0.5, min_track_frames=2)  # fmt: skip
    frames = []
    for t in range(6):
        seen_by_first = dets((10, 10, 60, 60, 0.9, 1)) if t == 0 else dets()
        frames.append([seen_by_first, dets((10, 10, 60, 60, 0.3, 1))])
    fused = [fuse(f, params) for f in frames]
    sizes = [FrameSize(i, W, H) for i in range(6)]
    labelled = label_clip(
        fused, sizes, params, n_models=2, strong=[strongest_view(f, params) for f in frames]
    )
    # Seen by the strongest member on 1 of 6 frames: the track keeps its mean fused score, under 0.5.
    assert sum(len(f.boxes) for f in labelled) == 0
