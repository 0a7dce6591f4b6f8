"""Detection triggers on hand-made detections whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from dataengine.triggers import (
    class_rarity,
    compare_frame,
    disagreement_score,
    flicker_score,
    link_tracks,
    rare_class_score,
    temporal_score,
)
from dataengine.vision import Detections

PERSON = (10.0, 10.0, 50.0, 90.0)
BED = (100.0, 40.0, 180.0, 90.0)


def dets(
    *boxes: tuple[float, float, float, float], labels: list[int] | None = None, score: float = 0.9
) -> Detections:
    n = len(boxes)
    return Detections(
        boxes_xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.full(n, score, dtype=np.float32),
        labels=np.array(labels if labels is not None else [0] * n, dtype=np.int64),
    )


def scored(box: tuple[float, float, float, float], scores: list[float], label: int = 0) -> list[Detections]:
    return [dets(box, labels=[label], score=s) for s in scores]


# Tracks -----------------------------------------------------------------------------------------


def test_tracks_bridge_a_gap_and_keep_separate_objects_apart() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1]), dets(BED, labels=[1]), dets(PERSON, BED, labels=[0, 1])]
    tracks = link_tracks(frames, max_gap=1)
    assert [(tr.positions, tr.labels) for tr in tracks] == [([0, 2], [0, 0]), ([0, 1, 2], [1, 1, 1])]
    assert [len(tr) for tr in link_tracks(frames, max_gap=0)] == [1, 3, 1]


# Flicker ----------------------------------------------------------------------------------------


def test_a_vanish_and_return_track_flickers_on_the_missing_frames() -> None:
    frames = [dets(PERSON), dets(PERSON), dets(), dets(), dets(PERSON), dets(PERSON)]
    result = flicker_score(frames, [0, 5, 10, 15, 20, 25])
    assert result.score == 1.0
    assert result.frames == [10, 15]
    assert (result.details["vanish_and_return"], result.details["tracks"]) == (1, 1)


def test_a_steady_object_does_not_flicker() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1]) for _ in range(6)]
    result = flicker_score(frames, list(range(6)))
    assert (result.score, result.frames, result.details["flickering_tracks"]) == (0.0, [], 0)


def test_dipping_below_the_threshold_is_vanishing() -> None:
    result = flicker_score(scored(PERSON, [0.9, 0.9, 0.3, 0.9, 0.9]), list(range(5)), score_threshold=0.5)
    assert result.score == 1.0
    assert result.frames == [2]


def test_a_single_frame_appearance_flickers_but_not_at_the_clip_edge() -> None:
    middle = [dets(BED), dets(BED), dets(BED, PERSON), dets(BED), dets(BED)]
    result = flicker_score(middle, list(range(5)))
    assert result.score == pytest.approx(0.5)  # one of two tracks
    assert result.frames == [2]
    assert result.details["single_frame"] == 1
    entering = [dets(BED), dets(BED), dets(BED), dets(BED), dets(BED, PERSON)]
    assert flicker_score(entering, list(range(5))).score == 0.0


def test_one_blinking_object_among_four_is_a_quarter() -> None:
    steady = [(10.0 + 60 * i, 10.0, 50.0 + 60 * i, 50.0) for i in range(3)]
    blinking = (300.0, 10.0, 340.0, 50.0)
    frames = [dets(*steady, blinking) if t % 2 == 0 else dets(*steady) for t in range(5)]
    assert flicker_score(frames, list(range(5))).score == pytest.approx(0.25)


def test_zero_detections_score_zero_but_near_misses_give_a_low_confidence_signal() -> None:
    assert flicker_score([dets() for _ in range(5)], list(range(5))).score == 0.0
    unsure = flicker_score(scored(PERSON, [0.45, 0.4, 0.45, 0.4, 0.45]), list(range(5)), score_threshold=0.5)
    background = flicker_score(
        scored(PERSON, [0.06, 0.07, 0.06, 0.06, 0.07]), list(range(5)), score_threshold=0.5
    )
    assert 0.3 < unsure.score <= 0.5
    assert background.score < 0.05
    assert unsure.details["unsure_tracks"] == 1
    assert unsure.frames == []


def test_single_frame_and_empty_clips_score_zero() -> None:
    assert flicker_score([dets(PERSON)], [0]).score == 0.0
    assert flicker_score([], []).score == 0.0
    with pytest.raises(ValueError, match="2 per-frame values for 3 frames"):
        flicker_score([dets(), dets()], [0, 1, 2])


# Temporal inconsistency -------------------------------------------------------------------------


def moving(n: int, step: float = 2.0) -> list[tuple[float, float, float, float]]:
    return [(10.0 + step * t, 10.0, 50.0 + step * t, 90.0) for t in range(n)]


def test_a_class_flip_within_a_track_is_found() -> None:
    frames = [dets(box, labels=[1 if t == 3 else 0]) for t, box in enumerate(moving(6))]
    result = temporal_score(frames, [0, 2, 4, 6, 8, 10])
    assert result.score == 1.0
    assert result.details["class_flips"] == 2  # person -> bed -> person
    assert result.frames == [6, 8]


def test_a_box_jump_in_a_smooth_track_is_found() -> None:
    boxes = moving(6)
    boxes[4] = (boxes[4][0] + 30, 10.0, boxes[4][2] + 30, 90.0)  # IoU with its neighbours ~0.2
    result = temporal_score([dets(b) for b in boxes], list(range(6)))
    assert result.details["box_jumps"] == 2
    assert result.frames == [4, 5]
    assert result.score == 1.0


def test_score_oscillation_is_found() -> None:
    scores = [0.9, 0.55, 0.95, 0.55, 0.9, 0.9]
    frames = [dets(box, score=s) for box, s in zip(moving(6), scores, strict=True)]
    result = temporal_score(frames, list(range(6)))
    assert result.details["score_swings"] == 3
    assert result.score == 1.0


def test_a_smooth_consistent_track_scores_zero() -> None:
    result = temporal_score([dets(b) for b in moving(8)], list(range(8)))
    assert (result.score, result.frames, result.details["tracks"]) == (0.0, [], 1)
    assert temporal_score([dets()], [0]).score == 0.0


# Disagreement -----------------------------------------------------------------------------------


def test_two_disagreeing_models_count_unmatched_boxes_and_class_conflicts() -> None:
    ours = [dets(PERSON, BED, labels=[0, 1]), dets(PERSON)]
    theirs = [dets(PERSON, labels=[2]), dets(PERSON)]
    result = disagreement_score(ours, theirs, [0, 5])
    # Frame 0: PERSON matched with a class conflict, BED unmatched: (1 + 1) / 2; frame 1 agrees.
    assert result.score == pytest.approx(0.5)
    assert result.frames == [0]
    assert result.details == {
        "matched": 2,
        "unmatched": 1,
        "unmatched_other": 0,
        "class_conflicts": 1,
        "max_frame_disagreement": 1.0,
    }


def test_models_that_agree_or_both_see_nothing_score_zero() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1]), dets()]
    assert disagreement_score(frames, list(frames), [0, 1]).score == 0.0


def test_matching_needs_iou_half_and_ignores_low_confidence_boxes() -> None:
    shifted = (30.0, 10.0, 70.0, 90.0)  # IoU with PERSON 1/3
    assert compare_frame(dets(PERSON), dets(shifted)) == (0, 1, 1, 0)
    assert compare_frame(dets(PERSON), dets(shifted), iou_threshold=0.3) == (1, 0, 0, 0)
    faint = [dets(PERSON, score=0.2)]
    assert disagreement_score(faint, [dets()], [0], score_threshold=0.5).score == 0.0


# Rare class -------------------------------------------------------------------------------------

NAMES = ["person", "bed", "wheelchair"]
#: Training boxes per class: wheelchairs are 4% of them.
PRIOR = [500.0, 460.0, 40.0]
CHAIR = (60.0, 50.0, 95.0, 95.0)


def test_class_rarity_is_how_far_a_class_lies_under_its_fair_share() -> None:
    assert class_rarity(PRIOR) == pytest.approx([0.0, 0.0, 1 - 3 * 0.04])
    assert class_rarity([10.0, 0.0]) == pytest.approx([0.0, 1.0])  # never labelled: as rare as it gets
    assert class_rarity([1.0, 1.0, 1.0]) == pytest.approx([0.0, 0.0, 0.0])
    assert class_rarity([0.0, 0.0]).tolist() == [0.0, 0.0]  # nothing known
    assert class_rarity([]).size == 0


def test_a_persistent_rare_class_track_fires_on_its_frames() -> None:
    frames = [dets(PERSON, BED, labels=[0, 1])] * 2 + [dets(PERSON, BED, CHAIR, labels=[0, 1, 2])] * 3
    result = rare_class_score(frames, [0, 4, 8, 12, 16], class_prior=PRIOR, class_names=NAMES)
    # Three shown frames at 0.9: evidence 1 - 0.1^3, times the class's rarity 0.88.
    assert result.score == pytest.approx(0.88 * (1 - 0.1**3))
    assert result.frames == [8, 12, 16]
    assert result.details["class"] == "wheelchair"
    assert result.details["prior_share"] == pytest.approx(0.04)
    assert (result.details["observations"], result.details["rare_tracks"]) == (3, 1)


def test_a_single_unsure_or_flipping_sighting_weighs_less_than_a_steady_one() -> None:
    once = rare_class_score(
        [dets(PERSON), dets(PERSON, CHAIR, labels=[0, 2], score=0.6), dets(PERSON)],
        [0, 1, 2], class_prior=PRIOR,
    )  # fmt: skip
    assert once.score == pytest.approx(0.88 * 0.6)
    # A person track labelled wheelchair on one of its three shown frames: a third of the evidence.
    flip = rare_class_score(
        [dets(PERSON, labels=[label]) for label in (0, 2, 0)], [0, 1, 2], class_prior=PRIOR
    )
    assert flip.score == pytest.approx(0.88 * 0.9 / 3)
    assert flip.score < once.score
    # Under the score threshold it is not a sighting at all.
    unsure = rare_class_score([dets(CHAIR, labels=[2], score=0.3)] * 4, [0, 1, 2, 3], class_prior=PRIOR)
    assert (unsure.score, unsure.frames) == (0.0, [])


def test_common_classes_zero_detections_and_a_single_frame() -> None:
    common = [dets(PERSON, BED, labels=[0, 1]) for _ in range(4)]
    assert rare_class_score(common, [0, 1, 2, 3], class_prior=PRIOR).score == 0.0
    assert rare_class_score([dets() for _ in range(3)], [0, 1, 2], class_prior=PRIOR).score == 0.0
    single = rare_class_score([dets(CHAIR, labels=[2], score=0.8)], [7], class_prior=PRIOR)
    assert single.score == pytest.approx(0.88 * 0.8)
    assert single.frames == [7]
    assert rare_class_score([], [], class_prior=PRIOR).score == 0.0
    # No class balance known (no training boxes): nothing can be called rare.
    assert rare_class_score([dets(CHAIR, labels=[2])], [0], class_prior=[0.0, 0.0, 0.0]).score == 0.0
