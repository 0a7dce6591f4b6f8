"""Trigger math on hand-made detections and frames, and selection under a budget."""

from __future__ import annotations

import numpy as np
import pytest

from dataengine.errors import ConfigError, ModelError
from dataengine.triggers import (
    BRIGHTNESS_CHANGE,
    DISAGREEMENT,
    FLICKER,
    TRIGGERS,
    ClipFrames,
    Trigger,
    TriggerInputs,
    TriggerRegistry,
    TriggerResult,
    best_trigger,
    brightness_change_score,
    budget_size,
    disagreement_score,
    flicker_score,
    frame_f1,
    mean_luma,
    rank_clips,
    select_under_budget,
)
from dataengine.vision import Detections


def dets(*boxes: tuple[float, float, float, float], labels: list[int] | None = None) -> Detections:
    n = len(boxes)
    return Detections(
        boxes_xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.full(n, 0.9, dtype=np.float32),
        labels=np.array(labels if labels is not None else [0] * n, dtype=np.int64),
    )


PERSON = (10.0, 10.0, 50.0, 90.0)
BED = (100.0, 40.0, 180.0, 90.0)


def gray(level: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.full((*size, 3), level, dtype=np.uint8)


# Flicker ----------------------------------------------------------------------------------------


def test_flicker_is_zero_for_stable_detections() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1]) for _ in range(6)]
    result = flicker_score(frames, list(range(0, 60, 10)))
    assert result.score == 0.0
    assert result.frames == []
    assert result.details["vanished"] == 0
    assert result.details["reappeared"] == 0


def test_flicker_is_high_for_on_off_detections() -> None:
    frames = [dets(PERSON) if t % 2 == 0 else dets() for t in range(6)]
    result = flicker_score(frames, [0, 15, 30, 45, 60, 75])
    assert result.score == 1.0
    assert result.frames == [15, 30, 45, 60, 75]
    assert result.details["vanished"] == 3
    assert result.details["appeared"] == 2
    assert result.details["reappeared"] == 2
    assert result.details["detections_per_frame"] == [1, 0, 1, 0, 1, 0]


def test_flicker_of_one_object_among_four_is_partial() -> None:
    steady = [(10.0 + 60 * i, 10.0, 50.0 + 60 * i, 50.0) for i in range(3)]
    blinking = (300.0, 10.0, 340.0, 50.0)
    frames = [dets(*steady, blinking) if t % 2 == 0 else dets(*steady) for t in range(5)]
    result = flicker_score(frames, list(range(5)))
    # Each transition: 3 of 4 distinct objects found again, Jaccard 3/4, churn 1/4.
    assert result.score == pytest.approx(0.25)
    assert result.frames == []
    assert result.details["reappeared"] == 2


def test_flicker_matches_moving_boxes_and_separates_labels() -> None:
    moving = [dets((10.0 + 3 * t, 10.0, 50.0 + 3 * t, 90.0)) for t in range(5)]
    assert flicker_score(moving, list(range(5))).score == 0.0
    relabelled = [dets(PERSON, labels=[t % 2]) for t in range(3)]
    assert flicker_score(relabelled, [0, 1, 2]).score == 1.0


def test_flicker_on_too_few_frames_is_zero() -> None:
    assert flicker_score([], []).score == 0.0
    assert flicker_score([dets(PERSON)], [0]).score == 0.0
    assert flicker_score([dets(), dets()], [0, 1]).score == 0.0


def test_a_count_jump_raises_flicker() -> None:
    crowd = [(10.0 + 50 * i, 10.0, 40.0 + 50 * i, 40.0) for i in range(4)]
    frames = [dets(*crowd), dets(*crowd[:1]), dets(*crowd)]
    result = flicker_score(frames, [0, 1, 2])
    assert result.score == pytest.approx(0.75)
    assert result.frames == [1, 2]


def test_flicker_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 per-frame values for 3 frames"):
        flicker_score([dets(), dets()], [0, 1, 2])


# Disagreement -----------------------------------------------------------------------------------


def test_disagreement_is_zero_for_identical_outputs() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1]), dets(), dets(PERSON)]
    result = disagreement_score(frames, list(frames), [0, 5, 10])
    assert result.score == 0.0
    assert result.frames == []
    assert result.details["mean_f1"] == 1.0


def test_disagreement_is_one_when_models_never_agree() -> None:
    result = disagreement_score([dets(PERSON), dets(BED)], [dets(BED), dets()], [0, 5])
    assert result.score == 1.0
    assert result.frames == [0, 5]


def test_disagreement_needs_the_same_label_and_iou_half() -> None:
    assert frame_f1(dets(PERSON, labels=[0]), dets(PERSON, labels=[1])) == 0.0
    shifted = (30.0, 10.0, 70.0, 90.0)  # IoU with PERSON = 20*80 / (2*3200 - 1600) = 1/3
    assert frame_f1(dets(PERSON), dets(shifted)) == 0.0
    assert frame_f1(dets(PERSON), dets(shifted), iou_threshold=0.3) == 1.0
    assert frame_f1(dets(), dets()) == 1.0


def test_disagreement_averages_f1_over_frames() -> None:
    # Frame 0: one of two boxes matched (F1 2/3); frame 1: full agreement.
    result = disagreement_score(
        [dets(PERSON, BED, labels=[0, 1]), dets(BED)], [dets(PERSON), dets(BED)], [0, 1]
    )
    assert result.score == pytest.approx(1 - (2 / 3 + 1) / 2)
    assert result.frames == []


# Brightness -------------------------------------------------------------------------------------


def test_brightness_jump_is_detected() -> None:
    frames = [gray(60), gray(61), gray(160), gray(158)]
    result = brightness_change_score(frames, [0, 4, 8, 12])
    assert result.score == 1.0
    assert result.frames == [8]
    assert result.details["max_luma_change"] == pytest.approx(99.0)


def test_steady_light_scores_zero_and_small_changes_scale() -> None:
    assert brightness_change_score([gray(80)] * 5, list(range(5))).score == 0.0
    assert brightness_change_score([gray(80), gray(96)], [0, 1]).score == pytest.approx(16 / 64)
    assert brightness_change_score([gray(80)], [0]).score == 0.0
    assert brightness_change_score([], []).score == 0.0


def test_mean_luma_weights_green_most() -> None:
    red, green = np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0], green[..., 1] = 255, 255
    assert mean_luma(red) == pytest.approx(0.299 * 255)
    assert mean_luma(green) == pytest.approx(0.587 * 255)


# The registered triggers on TriggerInputs -------------------------------------------------------


def test_builtin_triggers_read_the_shared_inputs() -> None:
    clip = ClipFrames(clip_id="c", indices=[0, 1, 2], frames=[gray(10), gray(200), gray(10)])
    detections = [dets(PERSON), dets(), dets(PERSON)]
    inputs = TriggerInputs(
        clip=clip,
        detections=detections,
        previous_detections=detections,
        model_id="m2",
        previous_model_id="m1",
    )
    assert FLICKER.compute(inputs).score == 1.0
    disagreement = DISAGREEMENT.compute(inputs)
    assert disagreement.score == 0.0
    assert disagreement.details["previous_model_id"] == "m1"
    assert BRIGHTNESS_CHANGE.compute(inputs).frames == [1, 2]
    assert [t.name for t in TRIGGERS] == ["flicker", "disagreement", "brightness_change"]
    assert [t.needs_model for t in TRIGGERS] == [True, True, False]


def test_model_triggers_without_detections_raise_model_error() -> None:
    inputs = TriggerInputs(clip=ClipFrames(clip_id="c", indices=[0], frames=[gray(1)]))
    with pytest.raises(ModelError, match="flicker"):
        FLICKER.compute(inputs)
    with pytest.raises(ModelError, match="two models"):
        DISAGREEMENT.compute(inputs)


def test_trigger_result_score_must_lie_in_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TriggerResult(score=1.5)
    assert TriggerResult(score=0.0).frames == []


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    registry = TriggerRegistry()
    registry.register(BRIGHTNESS_CHANGE)
    with pytest.raises(ConfigError, match="registered already"):
        registry.register(BRIGHTNESS_CHANGE)
    with pytest.raises(ConfigError, match="unknown trigger 'nope'"):
        registry.select(["nope"])
    custom = Trigger(name="always", needs_model=False, compute=lambda _: TriggerResult(score=1.0))
    registry.register(custom)
    assert [t.name for t in registry.select(["always", "brightness_change"])] == [
        "brightness_change",
        "always",
    ]
    assert "always" in registry
    assert len(registry) == 2


# Budget and selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "fraction", "count", "k"),
    [
        (30, 0.1, None, 3),  # 0.1 * 30 is 3.0000000000000004 in floats: still 3
        (31, 0.1, None, 4),
        (10, 0.25, None, 3),
        (10, 1.0, None, 10),
        (10, 0.5, 2, 2),  # a count wins over a fraction
        (3, None, 5, 3),  # never more than there are clips
        (0, 0.5, None, 0),
        (0, None, 4, 0),
        (5, 0.0, None, 0),
        (7, None, 0, 0),
    ],
)
def test_budget_size(n: int, fraction: float | None, count: int | None, k: int) -> None:
    assert budget_size(n, fraction=fraction, count=count) == k


def test_budget_size_refuses_bad_budgets() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        budget_size(5, fraction=None, count=-1)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        budget_size(5, fraction=1.5, count=None)
    with pytest.raises(ConfigError, match="a budget is needed"):
        budget_size(5, fraction=None, count=None)


def test_selection_ranks_by_best_trigger_and_breaks_ties_by_clip_id() -> None:
    scores = {
        "c-3": {"flicker": 0.2, "brightness_change": 0.9},
        "c-1": {"flicker": 0.5, "brightness_change": 0.1},
        "c-2": {"flicker": 0.5, "brightness_change": 0.5},
        "c-0": {"flicker": 0.0},
    }
    order = ["flicker", "disagreement", "brightness_change"]
    selected, rejected = select_under_budget(scores, k=2, trigger_order=order)
    assert [(r.clip_id, r.trigger, r.score, r.rank) for r in selected] == [
        ("c-3", "brightness_change", 0.9, 1),
        ("c-1", "flicker", 0.5, 2),
    ]
    # c-2 ties c-1 at 0.5 and loses on its id; its own tie goes to the earlier trigger.
    assert [(r.clip_id, r.trigger) for r in rejected] == [("c-2", "flicker"), ("c-0", "flicker")]


def test_selection_of_zero_clips_and_zero_budget() -> None:
    assert select_under_budget({}, k=3) == ([], [])
    selected, rejected = select_under_budget({"a": {"x": 1.0}}, k=0)
    assert selected == []
    assert [r.clip_id for r in rejected] == ["a"]
    with pytest.raises(ConfigError):
        select_under_budget({}, k=-1)


def test_a_clip_without_scores_ranks_last_with_no_trigger() -> None:
    ranked = rank_clips({"b": {}, "a": {"t": 0.0}})
    assert [(r.clip_id, r.trigger, r.score) for r in ranked] == [("a", "t", 0.0), ("b", None, 0.0)]
    assert best_trigger({}) == (None, 0.0)
    assert best_trigger({"b": 0.4, "a": 0.4}) == ("a", 0.4)
    assert best_trigger({"b": 0.4, "a": 0.4}, ["b", "a"]) == ("b", 0.4)
