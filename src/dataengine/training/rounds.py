"""One training round's steps beyond ``build_dataset`` and ``train``: whether the round is due, and what to
evaluate. The ``one_click_train`` DAG and ``demo --through python`` both run them (``dataengine.workflow``).
"""

from __future__ import annotations

import logging
from typing import Any

from dataengine.context import Context
from dataengine.errors import AlreadyDecidedError
from dataengine.training.evaluation import evaluate
from dataengine.training.manifest import DEFAULT_NAME, DatasetRef
from dataengine.training.registry import evaluate_candidate
from dataengine.training.snapshot import build_dataset
from dataengine.training.summary import decided_model_for

log = logging.getLogger(__name__)


def dataset_for_round(
    ctx: Context, *, name: str = DEFAULT_NAME, rebuild_heldout: bool = False, force: bool = False
) -> DatasetRef:
    """Snapshot dataset ``name`` for a training round.

    Raises :class:`AlreadyDecidedError` when the snapshot is unchanged and a model trained on it was
    already decided (promoted or rejected): with no new reviewed data, the round would only repeat
    itself. ``force`` trains anyway.
    """
    ref = build_dataset(ctx, name=name, rebuild_heldout=rebuild_heldout)
    log.info(
        "dataset %s: %d clips (%d train, %d val), %s; diff %s; held-out sets %s and %s",
        ref.dataset_id,
        ref.n_clips,
        ref.n_train,
        ref.n_val,
        "new" if ref.created else "unchanged",
        ref.diff,
        ref.heldout_id,
        ref.edge_cases_id or "(no edge-case set yet)",
    )
    decided = None if ref.created or force else decided_model_for(ctx, ref.dataset_id)
    if decided is not None:
        raise AlreadyDecidedError(
            f"no new reviewed data: {ref.dataset_id} has the same clips as before and model {decided} "
            "was already trained and decided on it; trigger with force=true to train again"
        )
    return ref


def evaluate_round(ctx: Context, *, model_id: str, dataset: str | None = None) -> dict[str, Any]:
    """The candidate's and the promoted model's mAP on both held-out sets (the round's evaluation).

    With ``dataset`` only the model is scored, on that dataset's regression held-out set.
    """
    if dataset:
        result = evaluate(ctx, model_id=model_id, dataset=dataset)
        log.info("%s", result.summary())
        return result.to_dict()
    comparison = evaluate_candidate(ctx, model_id=model_id)
    for line in comparison.summary().splitlines():
        log.info("%s", line)
    regression, edge = comparison.regression, comparison.edge_case
    return {
        "held_out": comparison.held_out,
        "map": regression.candidate.map,
        "per_class": regression.candidate.to_dict()["per_class"],
        "previous_model_id": comparison.promoted_model_id,
        "previous_map": regression.promoted.map if regression.promoted else None,
        "edge_case": edge.label if edge else None,
        "edge_map": edge.candidate.map if edge else None,
        "previous_edge_map": edge.promoted.map if edge and edge.promoted else None,
    }
