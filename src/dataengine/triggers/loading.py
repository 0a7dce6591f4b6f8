"""The models a trigger run needs: the promoted detector, a reference detector, the anomaly autoencoder.

A model that is not there is not an error: the triggers that need it are skipped, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dataengine.context import Context
from dataengine.errors import ModelError, NotFoundError
from dataengine.lineage import Model, Session
from dataengine.lineage.datasets import dataset_by_id, get_dataset
from dataengine.lineage.model_registry import get_model, promoted_model
from dataengine.triggers.anomaly import AnomalyModel, current_anomaly_id, load_anomaly_model
from dataengine.triggers.base import Trigger
from dataengine.vision import FrameDetector, load_any_detector

NO_MODEL_MESSAGE = (
    "no promoted model yet: import one (`dataengine model import`) or train one (`dataengine train`)"
)
#: The dataset whose class balance ``rare_class`` uses while an imported model is promoted.
IMPORTED_PRIOR_DATASET = "default"
NO_ANOMALY_MESSAGE = "no anomaly autoencoder yet: train one with `dataengine triggers train-anomaly`"


@dataclass
class RunModels:
    """The models of a run, and the triggers it skips for want of one."""

    model_id: str | None = None
    promoted: FrameDetector | None = None
    reference: FrameDetector | None = None
    anomaly: AnomalyModel | None = None
    #: Boxes per class name in the promoted model's training split (its dataset's ``class_boxes``).
    class_prior: dict[str, int] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def reference_model_id(self) -> str | None:
        """The reference detector's id, if one is loaded."""
        return self.reference.model_id if self.reference is not None else None


def _model_exists(session: Session, model_id: str) -> bool:
    try:
        get_model(session, model_id)
    except NotFoundError:
        return False
    return True


def _class_prior(session: Session, promoted: Model) -> tuple[dict[str, int] | None, str]:
    """The promoted model's training boxes per class name, or None and why they are unknown.

    An imported model's own training set is unknown; what counts for the engine is what the next model
    will learn from, so it gets the newest version of the ``default`` dataset, once there is one.
    """
    dataset_id = promoted.dataset_id
    if dataset_id is None and promoted.origin == "imported":
        try:
            dataset_id = get_dataset(session, IMPORTED_PRIOR_DATASET).id
        except NotFoundError:
            return None, (
                f"the promoted model {promoted.id} is imported and there is no dataset yet to take the "
                "class balance from; `dataset build` makes one"
            )
    if dataset_id is None:
        return None, f"the promoted model {promoted.id} names no dataset, so its class balance is unknown"
    dataset = dataset_by_id(session, dataset_id)
    boxes = ((dataset.counts or {}).get("class_boxes") or {}) if dataset is not None else {}
    # The training split is what the model learnt from; a version without one (all val) uses val.
    counts = boxes.get("train") if any((boxes.get("train") or {}).values()) else boxes.get("val")
    if not counts or not any(counts.values()):
        return None, (
            f"dataset {dataset_id} of the promoted model {promoted.id} records no boxes per "
            "class (built before they were counted, or empty); the next dataset version records them"
        )
    return {str(name): int(n) for name, n in counts.items()}, ""


def _reference_id(
    ctx: Context, session: Session, promoted_id: str, parent_id: str | None
) -> tuple[str | None, str]:
    """The reference model's id (the configured one, else the previous promoted), or None and why not."""
    wanted = ctx.settings.trigger_reference_model or parent_id
    if wanted is None:
        return None, f"the promoted model {promoted_id} has no previous model to compare with"
    if wanted == promoted_id:
        return None, f"the reference model {wanted} is the promoted model itself"
    if not _model_exists(session, wanted):
        return None, f"the reference model {wanted} of {promoted_id} is not in the lineage database"
    return wanted, ""


def _load_reference(ctx: Context, reference_id: str) -> tuple[FrameDetector | None, str]:
    try:
        return load_any_detector(ctx.store, reference_id, device=ctx.settings.device), ""
    except ModelError as exc:
        return None, f"the reference model {reference_id} has no usable checkpoint: {exc}"


def _load_anomaly(ctx: Context) -> tuple[AnomalyModel | None, str]:
    model_id = current_anomaly_id(ctx.store)
    if model_id is None:
        return None, NO_ANOMALY_MESSAGE
    return load_anomaly_model(ctx.store, model_id), ""


def load_models(ctx: Context, triggers: Sequence[Trigger], *, load: bool) -> RunModels:
    """The models ``triggers`` need; ``load=False`` (nothing to score) only looks up which are there.

    A broken checkpoint of the promoted model or of the current anomaly model is a :class:`ModelError`:
    silently skipping the production model would hide the fault.
    """
    models = RunModels()
    if any(t.needs_anomaly_model for t in triggers):
        if load:
            models.anomaly, why = _load_anomaly(ctx)
        else:
            why = "" if current_anomaly_id(ctx.store) else NO_ANOMALY_MESSAGE
        if why:
            models.skipped.update({t.name: why for t in triggers if t.needs_anomaly_model})
    if not any(t.needs_model for t in triggers):
        return models
    with ctx.db.session() as session:
        promoted = promoted_model(session)
        if promoted is None:
            models.skipped.update({t.name: NO_MODEL_MESSAGE for t in triggers if t.needs_model})
            return models
        models.model_id = promoted.id
        reference_id, why = _reference_id(ctx, session, promoted.id, promoted.parent_model_id)
        if any(t.needs_class_prior for t in triggers):
            models.class_prior, no_prior = _class_prior(session, promoted)
            if models.class_prior is None:
                models.skipped.update({t.name: no_prior for t in triggers if t.needs_class_prior})
    if not load:
        return models
    models.promoted = load_any_detector(ctx.store, promoted.id, device=ctx.settings.device)
    if any(t.needs_previous_model for t in triggers):
        if reference_id is not None:
            models.reference, why = _load_reference(ctx, reference_id)
        if models.reference is None:
            models.skipped.update({t.name: why for t in triggers if t.needs_previous_model})
    return models
