"""Selection under a labelling budget: rank clips by their best trigger score, keep the top k."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dataengine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RankedClip:
    """A clip's place in the ranking: its combined score and the trigger that gave it."""

    clip_id: str
    score: float
    trigger: str | None
    rank: int


def budget_size(n_candidates: int, *, fraction: float | None, count: int | None) -> int:
    """How many of ``n_candidates`` clips to select: ``count`` if given, else ``ceil(fraction * n)``.

    The result never exceeds ``n_candidates``.
    """
    if count is not None:
        if count < 0:
            raise ConfigError(f"the budget count must be >= 0, got {count}")
        return min(count, n_candidates)
    if fraction is None:
        raise ConfigError("a budget is needed: give a budget fraction or a budget count")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the budget fraction must lie in [0, 1], got {fraction}")
    # Rounding first keeps float noise (0.1 * 30 = 3.0000000000000004) from adding a clip.
    return min(math.ceil(round(fraction * n_candidates, 9)), n_candidates)


def best_trigger(scores: Mapping[str, float], order: Sequence[str] = ()) -> tuple[str | None, float]:
    """The trigger with the highest score and that score (``(None, 0.0)`` when there is none).

    Equal scores go to the trigger earlier in ``order``, then to the alphabetically first name.
    """
    if not scores:
        return None, 0.0
    position = {name: i for i, name in enumerate(order)}
    name = min(scores, key=lambda n: (-scores[n], position.get(n, len(position)), n))
    return name, float(scores[name])


def rank_clips(
    scores: Mapping[str, Mapping[str, float]], *, trigger_order: Sequence[str] = ()
) -> list[RankedClip]:
    """Clips by combined score (the max of their trigger scores), highest first; ties by clip id."""
    combined = {clip_id: best_trigger(by_trigger, trigger_order) for clip_id, by_trigger in scores.items()}
    ordered = sorted(combined, key=lambda clip_id: (-combined[clip_id][1], clip_id))
    return [
        RankedClip(clip_id=clip_id, score=combined[clip_id][1], trigger=combined[clip_id][0], rank=i + 1)
        for i, clip_id in enumerate(ordered)
    ]


def select_under_budget(
    scores: Mapping[str, Mapping[str, float]], *, k: int, trigger_order: Sequence[str] = ()
) -> tuple[list[RankedClip], list[RankedClip]]:
    """``(selected, rejected)``: the ``k`` best-ranked clips and the rest."""
    if k < 0:
        raise ConfigError(f"cannot select a negative number of clips ({k})")
    ranked = rank_clips(scores, trigger_order=trigger_order)
    return ranked[:k], ranked[k:]
