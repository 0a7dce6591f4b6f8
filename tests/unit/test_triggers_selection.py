"""Selection: the weighted combination, the budget, the diversity rule, determinism; and the registry."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from dataengine.errors import ConfigError
from dataengine.triggers import (
    TRIGGERS,
    Candidate,
    Trigger,
    TriggerRegistry,
    TriggerResult,
    budget_size,
    combine,
    select,
    strongest,
)
from dataengine.triggers.selection import _source_baselines, surprises


def cand(clip_id: str, video: str = "v", camera: str | None = None, **scores: float) -> Candidate:
    return Candidate(clip_id, scores, video, camera)


def picked(candidates: list[Candidate], **kwargs: object) -> list[str]:
    decisions, _ = select(candidates, **kwargs)  # type: ignore[arg-type]
    return [d.clip_id for d in decisions if d.selected]


def test_budget_is_a_floor_of_the_fraction_with_one_clip_when_anything_fires() -> None:
    assert budget_size(1000, fraction=0.001, count=None) == 1
    assert budget_size(2500, fraction=0.001, count=None) == 2
    assert budget_size(30, fraction=0.1, count=None) == 3  # float noise does not lose a clip
    assert budget_size(200, fraction=0.001, count=None) == 0
    assert budget_size(200, fraction=0.001, count=None, any_fired=True) == 1
    assert budget_size(5, fraction=0.5, count=9) == 5
    assert budget_size(0, fraction=0.5, count=None, any_fired=True) == 0
    with pytest.raises(ConfigError, match="must be >= 0"):
        budget_size(5, fraction=None, count=-1)
    with pytest.raises(ConfigError, match="must lie in"):
        budget_size(5, fraction=1.5, count=None)
    with pytest.raises(ConfigError, match="a budget is needed"):
        budget_size(5, fraction=None, count=None)


def test_combination_is_the_weighted_max_or_mean() -> None:
    scores = {"flicker": 0.8, "blur": 0.2, "anomaly": 0.9}
    combined, mean, weighted = combine(scores, {"anomaly": 0.5})
    assert combined == pytest.approx(0.8)
    assert weighted == {"flicker": 0.8, "blur": 0.2, "anomaly": 0.45}
    assert mean == pytest.approx((0.8 + 0.2 + 0.45) / 2.5)
    assert combine(scores, {"anomaly": 0.5}, mode="mean")[0] == pytest.approx(mean)
    assert strongest(weighted) == ("flicker", 0.8)
    assert strongest({"b": 0.5, "a": 0.5}, order=["b", "a"]) == ("b", 0.5)
    assert combine({}, {}) == (0.0, 0.0, {})
    with pytest.raises(ConfigError, match="weights must be >= 0"):
        combine(scores, {"blur": -1.0})


def test_the_budget_takes_the_best_and_every_decision_has_a_reason() -> None:
    candidates = [cand(f"c{i}", video=f"v{i}", flicker=i / 10) for i in range(10)]
    decisions, k = select(candidates, fraction=0.2, count=None)
    assert k == 2
    assert [d.clip_id for d in decisions if d.selected] == ["c9", "c8"]
    assert [d.rank for d in decisions] == list(range(1, 11))
    top, last = decisions[0], decisions[-1]
    assert (top.trigger, top.trigger_score, top.combined) == ("flicker", 0.9, 0.9)
    assert top.reason == "ranked within the budget of 2"
    assert last.reason == "ranked 10, below the budget of 2"


def test_nothing_fires_and_a_small_fraction_selects_nothing() -> None:
    decisions, k = select([cand(f"c{i}", blur=0.4) for i in range(50)], fraction=0.01, count=None)
    assert k == 0
    assert not any(d.selected for d in decisions)
    decisions, k = select(
        [cand(f"c{i}", blur=0.4 + 0.2 * (i == 7)) for i in range(50)], fraction=0.01, count=None
    )
    assert (k, [d.clip_id for d in decisions if d.selected]) == (1, ["c7"])


def test_diversity_spreads_picks_over_videos_then_fills_the_budget() -> None:
    crowd = [cand(f"a{i}", video="A", flicker=0.9 - i / 100) for i in range(4)]
    others = [cand("b0", video="B", flicker=0.5), cand("c0", video="C", flicker=0.4)]
    assert picked(crowd + others, fraction=None, count=4, max_video_share=0.5) == ["a0", "a1", "b0", "c0"]
    decisions, _ = select(crowd + others, fraction=None, count=4, max_video_share=0.5)
    held = next(d for d in decisions if d.clip_id == "a2")
    assert held.reason == "video A already had 2 pick(s) (diversity rule)"
    # With too few other videos the rule gives way, best first, so the budget is still spent.
    decisions, _ = select(crowd + others[:1], fraction=None, count=4, max_video_share=0.25)
    assert [d.clip_id for d in decisions if d.selected] == ["a0", "a1", "a2", "b0"]  # in rank order
    assert decisions[1].reason.endswith("after the diversity rule ran out of other clips")


def test_diversity_caps_cameras_too() -> None:
    candidates = [
        cand("x1", video="1", camera="door", flicker=0.9),
        cand("x2", video="2", camera="door", flicker=0.8),
        cand("x3", video="3", camera="hall", flicker=0.1),
    ]
    assert picked(candidates, fraction=None, count=2, max_camera_share=0.5) == ["x1", "x3"]


def test_the_same_input_gives_the_same_selection_in_any_order() -> None:
    rng = random.Random(3)
    candidates = [
        cand(f"c{i:03d}", video=f"v{i % 7}", flicker=rng.choice([0.0, 0.5, 1.0]), blur=rng.random())
        for i in range(200)
    ]
    first = select(candidates, fraction=0.05, count=None, max_video_share=0.3)
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    assert select(shuffled, fraction=0.05, count=None, max_video_share=0.3) == first
    # Equal scores fall to the lower clip id.
    assert picked([cand("b", flicker=1.0), cand("a", flicker=1.0)], fraction=None, count=1) == ["a"]


def test_surprise_is_the_tail_share_on_a_log_scale() -> None:
    # 100 clips: flicker 1.0 on 10, 0 on the rest; frozen 0.3 on exactly one clip and 0.1 on another.
    candidates = [
        cand(
            f"c{i:03d}", video=f"v{i}", flicker=1.0 if i < 10 else 0.0,
            frozen=0.3 if i == 50 else 0.1 if i == 51 else 0.0,
        )
        for i in range(100)
    ]  # fmt: skip
    tails = surprises(candidates)
    # Ten clips share flicker 1.0: p = 0.1, log(10) / log(100) = 0.5.
    assert tails[0]["flicker"] == pytest.approx(0.5)
    assert tails[50]["frozen"] == pytest.approx(1.0)  # no other clip reaches 0.3
    assert tails[51]["frozen"] == pytest.approx(math.log(50) / math.log(100))  # two clips reach 0.1
    assert tails[20] == {"flicker": 0.0, "frozen": 0.0}  # a zero score says nothing
    # A lone candidate has nothing to compare with; a trigger only some clips ran is ranked among those.
    assert surprises([cand("a", blur=0.9)]) == [{"blur": 0.0}]
    assert surprises([cand("a", "x", blur=0.9), cand("b", "y"), cand("c", "z", blur=0.1)]) == [
        {"blur": pytest.approx(1.0)}, {}, {"blur": 0.0}
    ]  # fmt: skip


def test_a_score_a_camera_reaches_on_most_of_its_clips_is_that_cameras_normal() -> None:
    # One video's 20 clips all show the same false wheelchair; one clip of a quiet video shows a real
    # one, a little weaker; 200 other clips show none.
    # The detector's confidence in the fixture wobbles a little from clip to clip.
    fixture = [cand(f"f{i:02d}", video="fixture", rare_class=0.67 + 0.0002 * i) for i in range(20)]
    event = cand("event", video="quiet", rare_class=0.66)
    quiet = [cand(f"q{i:02d}", video="quiet", rare_class=0.0) for i in range(19)]
    others = [cand(f"o{i:03d}", video=f"o{i % 10}", rare_class=0.0) for i in range(200)]
    pool = [*fixture, event, *quiet, *others]
    tails = surprises(pool)
    # The fixture clips hold the top of the run, but their video's other clips all score about as high:
    # the best of them stands 0.0020 above its baseline (the lower median of the other 19), 0.3% of its score.
    assert max(t["rare_class"] for t in tails[:20]) < 0.003
    # The event stands 0.66 above its quiet video's baseline of 0: no clip stands further out.
    assert tails[20]["rare_class"] == pytest.approx(1.0)
    assert picked(pool, fraction=None, count=1, calibration="rank") == ["event"]
    assert "event" not in picked(pool, fraction=None, count=1, calibration="none")
    # The camera, when known, is the group: two videos of one camera share their normal.
    same_camera = [
        cand("a", "v1", "door", blur=0.5),
        cand("b", "v2", "door", blur=0.5),
        cand("c", "v3", blur=0.0),
    ]
    assert [t["blur"] for t in surprises(same_camera)] == [0.0, 0.0, 0.0]
    # The baseline is the lower median of the camera's other clips (0.3 of 0.0, 0.3, 0.3); a clip keeps
    # the share of its score above it, and the two clips at 0.3 stand above nothing.
    lifted = [
        cand("a", "v", blur=0.9),
        cand("b", "v", blur=0.3),
        cand("c", "v", blur=0.3),
        cand("d", "v", blur=0.0),
    ]
    lifted += [cand(f"z{i}", f"z{i}", blur=0.0) for i in range(6)]
    assert [t.get("blur") for t in surprises(lifted)[:4]] == [pytest.approx(0.6 / 0.9), 0.0, 0.0, 0.0]
    # With few clips, one event does not lift its neighbours' baseline: 0.25 stands above 0.02, not 0.51.
    few = [cand("s", "v", blur=0.02), cand("j", "v", blur=1.0), cand("m", "v", blur=0.25)]
    assert surprises(few)[2]["blur"] == pytest.approx(math.log(3 / 2) / math.log(3) * 0.23 / 0.25)


def test_rank_calibration_puts_a_unique_outlier_above_a_common_high_score() -> None:
    # Twenty ordinary clips score flicker 1.0 (a detector that drops a box now and then); one clip is the
    # only one whose frames froze, with a modest raw score.
    crowd = [cand(f"f{i:02d}", video=f"v{i}", flicker=1.0, frozen=0.0) for i in range(20)]
    quiet = [cand(f"q{i:02d}", video=f"w{i}", flicker=0.0, frozen=0.0) for i in range(180)]
    stuck = cand("stuck", video="s", flicker=0.0, frozen=0.4)
    pool = crowd + quiet + [stuck]
    assert "stuck" not in picked(pool, fraction=None, count=5, calibration="none")
    decisions, k = select(pool, fraction=None, count=5, calibration="rank")
    top = decisions[0]
    assert (k, top.clip_id, top.trigger, top.trigger_score) == (5, "stuck", "frozen", 0.4)
    assert top.calibrated == pytest.approx(1.0)
    assert top.surprise == {"flicker": 0.0, "frozen": 1.0}
    # The raw scores stay what they were; the common flicker clips follow, with their surprise.
    assert top.combined == 0.4
    assert top.weighted == {"flicker": 0.0, "frozen": 0.4}
    assert decisions[1].calibrated == pytest.approx(math.log(201 / 20) / math.log(201), abs=1e-6)
    assert decisions[1].combined == 1.0
    # Weights apply to the surprises: frozen at weight 0.3 falls below the flicker crowd.
    weighted, _ = select(pool, fraction=None, count=5, calibration="rank", weights={"frozen": 0.3})
    assert (weighted[0].clip_id, weighted[20].clip_id) == ("f00", "stuck")
    assert weighted[20].calibrated == pytest.approx(0.3)


def test_firing_reads_the_raw_scores_when_calibrated() -> None:
    # Some clip is always the day's most surprising, but only a raw score at the threshold fires.
    calm = [cand(f"c{i}", video=f"v{i}", blur=0.1 + i / 1000) for i in range(50)]
    decisions, k = select(calm, fraction=0.01, count=None, calibration="rank")
    assert k == 0
    assert decisions[0].calibrated == pytest.approx(1.0)
    _, k = select([*calm, cand("x", blur=0.6)], fraction=0.01, count=None, calibration="rank")
    assert k == 1
    with pytest.raises(ConfigError, match="unknown trigger calibration"):
        select(calm, fraction=0.1, count=None, calibration="zscore")  # type: ignore[arg-type]


def test_rank_calibration_is_deterministic_in_any_order() -> None:
    rng = random.Random(5)
    candidates = [
        cand(f"c{i:03d}", video=f"v{i % 7}", flicker=rng.choice([0.0, 0.5, 1.0]), blur=rng.random())
        for i in range(200)
    ]
    first = select(candidates, fraction=0.05, count=None, max_video_share=0.3, calibration="rank")
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    assert select(shuffled, fraction=0.05, count=None, max_video_share=0.3, calibration="rank") == first


def test_the_registry_refuses_duplicates_and_names_unknown_triggers() -> None:
    registry = TriggerRegistry()
    mine = Trigger(name="mine", needs_model=False, compute=lambda inputs: TriggerResult(0.5))
    registry.register(mine)
    with pytest.raises(ConfigError, match="registered already"):
        registry.register(mine)
    with pytest.raises(ConfigError, match="unknown trigger 'nope'; triggers are mine"):
        registry.get("nope")
    assert TRIGGERS.names() == [
        "flicker", "temporal", "disagreement", "rare_class", "brightness", "blur", "frozen", "scene_cut",
        "anomaly",
    ]  # fmt: skip
    assert [t.name for t in TRIGGERS.select(["blur", "flicker"])] == ["flicker", "blur"]
    with pytest.raises(ValueError, match=r"lies in \[0, 1\]"):
        TriggerResult(1.5)


def test_the_report_reason_names_the_surprise_when_calibrated() -> None:
    from dataengine.triggers.run import _reason

    pool = [cand(f"c{i}", video=f"v{i}", blur=0.0) for i in range(9)] + [cand("x", video="x", blur=0.7)]
    calibrated, _ = select(pool, fraction=None, count=1, calibration="rank")
    assert _reason(calibrated[0]) == (
        "ranked within the budget of 1; strongest trigger blur 0.700 (surprise 1.00 among the candidates)"
    )
    raw, _ = select(pool, fraction=None, count=1, calibration="none")
    assert _reason(raw[0]) == "ranked within the budget of 1; strongest trigger blur 0.700"


def test_camera_baselines_are_the_lower_median_of_the_other_clips() -> None:
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(1, 12)
        values = np.array([rng.choice([0.0, 0.3, 0.3, 0.9, rng.random()]) for _ in range(n)])
        sources = [rng.choice(["a", "b", ""]) for _ in range(n)]
        expected = []
        for i in range(n):
            others = sorted(values[j] for j in range(n) if j != i and sources[j] == sources[i] and sources[i])
            expected.append(others[(len(others) - 1) // 2] if others else 0.0)
        assert _source_baselines(values, sources) == pytest.approx(expected)
