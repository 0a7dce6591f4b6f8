"""Quarantine: the inputs a stage refused, and why. The caller commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.lineage.clips import set_stage
from dataengine.lineage.models import Clip, QuarantineItem, utcnow
from dataengine.lineage.upsert import insert_if_absent


def quarantine(
    session: Session,
    *,
    kind: str,
    input: str,
    reason: str,
    stage: str,
    video_id: str | None = None,
    clip_id: str | None = None,
    run_id: str | None = None,
) -> QuarantineItem:
    """Record a refused input; a quarantined clip moves to stage ``quarantined``."""
    insert_if_absent(
        session, QuarantineItem, {"kind": kind, "input": input, "reason": reason, "stage": stage}
    )
    item = session.scalars(
        select(QuarantineItem).where(QuarantineItem.kind == kind, QuarantineItem.input == input)
    ).one()
    item.reason = reason
    item.stage = stage
    item.video_id = video_id
    item.clip_id = clip_id
    item.run_id = run_id
    item.at = utcnow()
    session.flush()
    if clip_id is not None and session.get(Clip, clip_id) is not None:
        set_stage(
            session,
            clip_id,
            "quarantined",
            run_id=run_id,
            details={"stage": stage, "reason": reason},
        )
    return item


def list_quarantine(session: Session, *, last: int | None = None) -> list[QuarantineItem]:
    """Every quarantined input, oldest first; only the ``last`` ones (newest by id) when given, read
    from the end of the primary key instead of the whole table."""
    if last is None:
        return list(session.scalars(select(QuarantineItem).order_by(QuarantineItem.id)))
    newest = session.scalars(select(QuarantineItem).order_by(QuarantineItem.id.desc()).limit(last))
    return list(reversed(list(newest)))
