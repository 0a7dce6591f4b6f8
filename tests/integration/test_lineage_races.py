"""Two runs registering the same rows at the same moment: both succeed, one row each, no traceback.

Run A inserts and keeps its transaction open; run B registers the same rows meanwhile (it waits for
A's lock), then A commits. With check-then-insert, B saw nothing and then hit the unique key
(``UNIQUE constraint failed`` on SQLite, ``UniqueViolation`` on PostgreSQL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage import annotations as annotation_versions
from dataengine.lineage import clips, quarantine, reviews, triggers, videos
from dataengine.lineage.db import Database
from dataengine.lineage.models import (
    AnnotationVersion,
    Clip,
    ClipEvent,
    QuarantineItem,
    ReviewTask,
    TriggerScore,
    Video,
)

VIDEO = "0123456789abcdef"
CLIP = f"{VIDEO}-0000000"


def _register_everything(session: Session) -> dict[str, bool]:
    """What ingest, triggers, autolabel and review export register for one clip; ``created`` flags."""
    videos.register_video(session, video_id=VIDEO, uri="file:///v.mp4", sha256=VIDEO + "0" * 48)
    _, clip_created = clips.register_clip(
        session, clip_id=CLIP, video_id=VIDEO, start_frame=0, end_frame=10, start_time=0.0,
        n_frames=10, uri="file:///clips/c", run_id="race",
    )  # fmt: skip
    quarantine.quarantine(session, kind="gap", input="file:///v.mp4#frames=3-9", reason="r", stage="ingest")
    triggers.record_trigger_score(session, clip_id=CLIP, trigger="novelty", score=0.5)
    _, annotation_created = annotation_versions.record_annotation(
        session, clip_id=CLIP, version=1, uri="file:///a/v0001.json", sha256="ab" * 32, source="autolabel",
        parent_version=None, producer={}, n_frames=2, n_boxes=3,
    )  # fmt: skip
    _, task_created = reviews.upsert_review_task(
        session, clip_id=CLIP, platform="local", exported_version=1, external_id="t-1"
    )
    return {"clip": clip_created, "annotation": annotation_created, "task": task_created}


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:  # the test reports it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_two_runs_registering_the_same_rows_at_once_both_succeed(db: Database) -> None:
    inserted = threading.Event()
    release = threading.Event()

    def first() -> dict[str, bool]:
        with db.session() as session:
            created = _register_everything(session)
            inserted.set()
            release.wait(30)
        return created

    def second() -> dict[str, bool]:
        inserted.wait(30)
        with db.session() as session:
            return _register_everything(session)

    a, a_outcome = _in_thread(first)
    b, b_outcome = _in_thread(second)
    inserted.wait(30)
    time.sleep(1.0)  # B is now waiting for A's rows (or A's write lock on SQLite)
    release.set()
    a.join(60)
    b.join(60)

    assert a_outcome == [{"clip": True, "annotation": True, "task": True}]
    assert b_outcome == [{"clip": False, "annotation": False, "task": False}], b_outcome
    with db.session() as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Video, Clip, ClipEvent, QuarantineItem, TriggerScore, AnnotationVersion, ReviewTask)
        }
    assert counts == {
        "videos": 1,
        "clips": 1,
        "clip_events": 1,  # only the run that inserted the clip wrote its "ingested" event
        "quarantine": 1,
        "trigger_scores": 1,
        "annotation_versions": 1,
        "review_tasks": 1,
    }
