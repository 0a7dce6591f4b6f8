"""The trained and imported detector models, their status and promotion. The caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.models import MODEL_ORIGINS, MODEL_STATUSES, Model, utcnow
from dataengine.lineage.upsert import insert_if_absent


def register_model(
    session: Session,
    *,
    model_id: str,
    checkpoint_uri: str,
    dataset_id: str | None,
    parent_model_id: str | None,
    metrics: dict[str, Any] | None = None,
    status: str = "candidate",
    origin: str = "trained",
    source_uri: str | None = None,
    source_sha256: str | None = None,
) -> Model:
    """Insert or update a model row; ``origin`` is ``trained`` or ``imported`` (from ``source_uri``)."""
    if status not in MODEL_STATUSES:
        raise LineageError(f"unknown model status {status!r}; statuses are {', '.join(MODEL_STATUSES)}")
    if origin not in MODEL_ORIGINS:
        raise LineageError(f"unknown model origin {origin!r}; origins are {', '.join(MODEL_ORIGINS)}")
    insert_if_absent(
        session,
        Model,
        {"id": model_id, "status": status, "created_at": utcnow(), "checkpoint_uri": checkpoint_uri},
    )
    model = session.get(Model, model_id, populate_existing=True)
    assert model is not None, "inserted or found just now"
    model.origin, model.source_uri, model.source_sha256 = origin, source_uri, source_sha256
    model.checkpoint_uri = checkpoint_uri
    model.dataset_id = dataset_id
    model.parent_model_id = parent_model_id
    model.metrics = metrics or {}
    model.status = status if model.status != "promoted" else model.status
    session.flush()
    return model


def get_model(session: Session, model_id: str) -> Model:
    """The model with ``model_id``; raises :class:`NotFoundError` when unknown."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFoundError(f"no model {model_id!r} in the lineage database")
    return model


def promoted_model(session: Session) -> Model | None:
    """The model in production: the most recently promoted one."""
    query = select(Model).where(Model.status == "promoted").order_by(Model.promoted_at.desc()).limit(1)
    return session.scalars(query).one_or_none()


def set_model_status(
    session: Session, model_id: str, status: str, *, metrics: dict[str, Any] | None = None
) -> Model:
    """Promote or reject a model. Promoting one retires the model promoted before it."""
    if status not in MODEL_STATUSES:
        raise LineageError(f"unknown model status {status!r}; statuses are {', '.join(MODEL_STATUSES)}")
    model = get_model(session, model_id)
    if status == "promoted" and model.status != "promoted":
        for other in session.scalars(select(Model).where(Model.status == "promoted")):
            other.status = "retired"
        model.promoted_at = utcnow()
    model.status = status
    if metrics is not None:
        model.metrics = metrics
    session.flush()
    return model


def list_models(session: Session) -> list[Model]:
    """Every model, oldest first."""
    return list(session.scalars(select(Model).order_by(Model.created_at, Model.id)))


def find_model(session: Session, model_id: str) -> Model | None:
    """The model with ``model_id``, or None when unknown."""
    return session.get(Model, model_id)


def models_trained_on(
    session: Session, dataset_id: str, *, statuses: Sequence[str] | None = None
) -> list[str]:
    """The ids of the models trained on ``dataset_id`` (optionally only in ``statuses``), oldest first."""
    query = select(Model.id).where(Model.dataset_id == dataset_id)
    if statuses is not None:
        query = query.where(Model.status.in_(list(statuses)))
    return list(session.scalars(query.order_by(Model.created_at)))
