"""Selection under a labelling budget: combine each clip's trigger scores, rank, keep the top k while
spreading the picks over videos and cameras, and give every clip (picked or not) its reason."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dataengine.errors import ConfigError

CombineMode = Literal["max", "mean"]
#: "rank": each trigger's score becomes its surprise over the run's candidates before combining;
#: "none": the raw scores are combined.
Calibration = Literal["rank", "none"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A clip that may be selected: its trigger scores and where it comes from."""

    clip_id: str
    scores: Mapping[str, float]
    video_id: str = ""
    camera: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What happened to one candidate, and why."""

    clip_id: str
    selected: bool
    #: The weighted combination of the raw scores (whether the clip *fired*).
    combined: float
    #: What breaks ties of the ranking score in "max" mode: the weighted mean of the raw scores, or of
    #: the surprises when calibrated.
    tie_break: float
    #: The strongest trigger (by weighted surprise when calibrated) and its raw score.
    trigger: str | None
    trigger_score: float
    rank: int
    reason: str
    weighted: dict[str, float] = field(default_factory=dict)
    #: The weighted combination of the surprises that the ranking used; None when not calibrated.
    calibrated: float | None = None
    #: Each trigger's surprise over the candidates (unweighted, in [0, 1]); empty when not calibrated.
    surprise: dict[str, float] = field(default_factory=dict)


def budget_size(
    n_candidates: int, *, fraction: float | None, count: int | None, any_fired: bool = False
) -> int:
    """How many of ``n_candidates`` to select: ``count`` if given, else ``floor(fraction * n)``, and at
    least one when ``any_fired`` (some clip's combined score reached the fire threshold). At most ``n``."""
    if count is not None:
        if count < 0:
            raise ConfigError(f"the budget count must be >= 0, got {count}")
        return min(count, n_candidates)
    if fraction is None:
        raise ConfigError("a budget is needed: give a budget fraction or a budget count")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the budget fraction must lie in [0, 1], got {fraction}")
    # Rounding first keeps float noise (0.1 * 30 = 2.9999999999999996) from losing a clip.
    k = math.floor(round(fraction * n_candidates, 9))
    if any_fired:
        k = max(k, 1)
    return min(k, n_candidates)


def combine(
    scores: Mapping[str, float], weights: Mapping[str, float], *, mode: CombineMode = "max"
) -> tuple[float, float, dict[str, float]]:
    """``(combined, weighted mean, weighted scores)``; a trigger missing from ``weights`` weighs 1.

    "max": the largest weighted score (a rare event usually fires one trigger, and averaging would drown
    it in the quiet others); "mean": the weighted mean. Both lie in [0, 1] for weights in [0, 1].
    """
    if any(w < 0 for w in weights.values()):
        raise ConfigError(f"trigger weights must be >= 0, got {dict(weights)}")
    weighted = {name: float(weights.get(name, 1.0)) * float(s) for name, s in scores.items()}
    total = sum(weights.get(name, 1.0) for name in scores)
    mean = sum(weighted.values()) / total if total > 0 else 0.0
    if mode == "max":
        return max(weighted.values(), default=0.0), mean, weighted
    if mode == "mean":
        return mean, mean, weighted
    raise ConfigError(f"unknown trigger combination {mode!r}; use 'max' or 'mean'")


def _source(candidate: Candidate) -> str:
    """The camera a clip comes from, else its video ("" when neither is known)."""
    return candidate.camera or candidate.video_id


def surprises(candidates: Sequence[Candidate]) -> list[dict[str, float]]:
    """Per candidate, each trigger's *surprise* over the candidates that have that trigger's score.

    With ``p`` the share of those ``N`` candidates scoring at least this clip's score, the surprise is
    ``log(1/p) / log(N)``: 1 for a clip no other clip matches, 0 for a score every clip reaches, and 0 for
    a zero score (a trigger that did not fire says nothing) or when ``N`` is 1 (nothing to compare with).
    A raw score that many ordinary clips reach is not surprising, however high it is.

    Scores are first measured against their *camera's baseline*: the lower median score of the same
    camera's other candidates (the same video's, when the camera is unknown; 0 for a clip alone), so
    a baseline is only as high as a score that at least half of those clips reach. The tail share
    ``p`` ranks the excess ``score - baseline``, and the surprise is scaled by ``excess / score``. A score
    that a camera reaches on most of its clips is that camera's normal (a fixture the detector always
    mistakes, a lens that is always soft), not an event, and it no longer crowds the tail of a clip
    whose camera is otherwise quiet, which keeps its whole surprise.
    """
    names = sorted({name for cand in candidates for name in cand.scores})
    sources = [_source(cand) for cand in candidates]
    out: list[dict[str, float]] = [{} for _ in candidates]
    for name in names:
        rows = [i for i, cand in enumerate(candidates) if name in cand.scores]
        values = np.array([float(candidates[i].scores[name]) for i in rows])
        n = len(values)
        excess = np.maximum(values - np.array(_source_baselines(values, [sources[i] for i in rows])), 0.0)
        ordered = np.sort(excess)
        # How many candidates stand at least as far above their baseline: ties share their tail.
        at_least = n - np.searchsorted(ordered, excess, side="left")
        for i, value, above, count in zip(
            rows, values.tolist(), excess.tolist(), at_least.tolist(), strict=True
        ):
            if value <= 0.0 or above <= 0.0 or n < 2:
                out[i][name] = 0.0
            else:
                out[i][name] = math.log(n / count) / math.log(n) * above / value
    return out


def _source_baselines(values: np.ndarray, sources: Sequence[str]) -> list[float]:
    """Per value, the lower median of the other values from the same (known) source; 0 when none."""
    groups: dict[str, list[int]] = {}
    for position, source in enumerate(sources):
        if source:
            groups.setdefault(source, []).append(position)
    baselines = [0.0] * len(values)
    for members in groups.values():
        if len(members) < 2:
            continue
        mine = values[members]
        # The lower median: with few clips a camera's one event must not lift its neighbours' baseline.
        middle = (len(members) - 2) // 2
        # Sorted once: without a clip of rank r, the others' value at `middle` is the sorted value at
        # `middle` when r lies above it and the next one otherwise (n log n for a camera's whole day).
        order = np.argsort(mine, kind="stable")
        ordered = mine[order]
        rank = np.empty(len(members), dtype=np.int64)
        rank[order] = np.arange(len(members))
        picked = np.where(rank > middle, ordered[middle], ordered[min(middle + 1, len(members) - 1)])
        for position, baseline in zip(members, picked.tolist(), strict=True):
            baselines[position] = baseline
    return baselines


def strongest(weighted: Mapping[str, float], order: Sequence[str] = ()) -> tuple[str | None, float]:
    """The trigger with the highest weighted score; ties go to the one earlier in ``order``, then by name."""
    if not weighted:
        return None, 0.0
    position = {name: i for i, name in enumerate(order)}
    name = min(weighted, key=lambda n: (-weighted[n], position.get(n, len(position)), n))
    return name, float(weighted[name])


def _cap(share: float, k: int) -> int:
    return max(1, math.ceil(round(share * k, 9)))


def _walk(
    ranked: Sequence[Candidate], k: int, video_cap: int, camera_cap: int
) -> tuple[dict[str, str], dict[str, str]]:
    """``(picked, held back)`` clip ids with their reasons: the diversity walk down the ranking, then the
    held-back clips fill what is left of the budget, best first."""
    videos: Counter[str] = Counter()
    cameras: Counter[str] = Counter()
    picked: dict[str, str] = {}
    held: dict[str, str] = {}
    for cand in ranked:
        if len(picked) == k:
            break
        if videos[cand.video_id] >= video_cap:
            held[cand.clip_id] = f"video {cand.video_id} already had {video_cap} pick(s) (diversity rule)"
        elif cand.camera is not None and cameras[cand.camera] >= camera_cap:
            held[cand.clip_id] = f"camera {cand.camera} already had {camera_cap} pick(s) (diversity rule)"
        else:
            picked[cand.clip_id] = f"ranked within the budget of {k}"
            videos[cand.video_id] += 1
            cameras[cand.camera or ""] += 1
    for clip_id in list(held):
        if len(picked) == k:
            break
        picked[clip_id] = f"ranked within the budget of {k} after the diversity rule ran out of other clips"
        del held[clip_id]
    return picked, held


def select(
    candidates: Sequence[Candidate],
    *,
    fraction: float | None,
    count: int | None,
    weights: Mapping[str, float] | None = None,
    mode: CombineMode = "max",
    max_video_share: float = 1.0,
    max_camera_share: float = 1.0,
    trigger_order: Sequence[str] = (),
    fire_threshold: float = 0.5,
    calibration: Calibration = "none",
) -> tuple[list[Decision], int]:
    """A decision for every candidate, best-ranked first, and the budget ``k``.

    A clip *fires* when its combined raw score reaches ``fire_threshold``; then a fractional budget
    selects at least one clip. With ``calibration`` "none", clips are ranked by the combined raw score,
    then its tie-break, then clip id. With "rank", each score is first replaced by its
    :func:`surprises` over the candidates, and the weighted surprises are combined and ranked the same
    way; firing still reads the raw scores, because a surprise is relative to the day. Walking
    down the ranking, a clip is picked unless its video already has ``ceil(max_video_share * k)``
    picks or its camera ``ceil(max_camera_share * k)``; when the budget is not spent after the walk, the
    clips the diversity
    rule held back fill it, best first.
    """
    if calibration not in ("rank", "none"):
        raise ConfigError(f"unknown trigger calibration {calibration!r}; use 'rank' or 'none'")
    weights = weights or {}
    calibrated = calibration == "rank"
    tails = surprises(candidates) if calibrated else [{} for _ in candidates]
    rows = []
    for cand, tail in zip(candidates, tails, strict=True):
        combined, mean, weighted = combine(cand.scores, weights, mode=mode)
        # The ranking key: the combination of the surprises when calibrating, else of the raw scores.
        if calibrated:
            key, tie, by = combine(tail, weights, mode=mode)
        else:
            key, tie, by = combined, mean, weighted
        rows.append((cand, combined, weighted, tail, key, tie, by))
    rows.sort(key=lambda r: (-r[4], -r[5], r[0].clip_id))
    k = budget_size(
        len(rows), fraction=fraction, count=count, any_fired=any(r[1] >= fire_threshold for r in rows)
    )
    picked, held = _walk([r[0] for r in rows], k, _cap(max_video_share, k), _cap(max_camera_share, k))
    decisions = []
    for rank, (cand, combined, weighted, tail, key, tie, by) in enumerate(rows, start=1):
        name, _ = strongest(by, trigger_order)
        reason = (
            picked.get(cand.clip_id) or held.get(cand.clip_id) or f"ranked {rank}, below the budget of {k}"
        )
        decisions.append(
            Decision(
                clip_id=cand.clip_id,
                selected=cand.clip_id in picked,
                combined=round(combined, 6),
                tie_break=round(tie, 6),
                trigger=name,
                trigger_score=round(float(cand.scores.get(name, 0.0)) if name else 0.0, 6),
                rank=rank,
                reason=reason,
                weighted={n: round(v, 6) for n, v in weighted.items()},
                calibrated=round(key, 6) if calibrated else None,
                surprise={n: round(v, 6) for n, v in tail.items()},
            )
        )
    return decisions, k
