"""Trigger scores: one row per (clip, trigger, model), replaced when scored again. The caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.lineage.models import TriggerScore, utcnow
from dataengine.lineage.upsert import insert_if_absent


def record_trigger_score(
    session: Session,
    *,
    clip_id: str,
    trigger: str,
    score: float,
    frames: Sequence[int] = (),
    model_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> TriggerScore:
    """Insert or replace the score of one trigger (and model) on one clip."""
    key = model_id or ""
    insert_if_absent(
        session,
        TriggerScore,
        {"clip_id": clip_id, "trigger": trigger, "model_key": key, "score": float(score), "frames": []},
    )
    row = session.scalars(
        select(TriggerScore).where(
            TriggerScore.clip_id == clip_id,
            TriggerScore.trigger == trigger,
            TriggerScore.model_key == key,
        )
    ).one()
    row.score = float(score)
    row.frames = [int(f) for f in frames]
    row.model_id = model_id
    row.run_id = run_id
    row.details = details or {}
    row.created_at = utcnow()
    session.flush()
    return row


def trigger_scores(session: Session, clip_id: str) -> list[TriggerScore]:
    """Every trigger score of a clip."""
    query = select(TriggerScore).where(TriggerScore.clip_id == clip_id).order_by(TriggerScore.id)
    return list(session.scalars(query))
