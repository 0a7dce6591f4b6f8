"""The clips aggregate: clips and their append-only ``clip_events``. The caller commits.

Every stage change of a clip writes its event row in the same transaction.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.models import CLIP_STAGES, AnnotationVersion, Clip, ClipEvent, ClipEventDay, utcnow
from dataengine.lineage.review_totals import refresh_review_totals
from dataengine.lineage.upsert import insert_if_absent


def get_clip(session: Session, clip_id: str) -> Clip:
    """The clip with ``clip_id``; raises :class:`NotFoundError` when unknown."""
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFoundError(f"no clip {clip_id!r} in the lineage database; see `dataengine clips list`")
    return clip


def register_clip(
    session: Session,
    *,
    clip_id: str,
    video_id: str,
    start_frame: int,
    end_frame: int,
    start_time: float,
    n_frames: int,
    uri: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[Clip, bool]:
    """Register a newly ingested clip; returns ``(clip, created)``. An existing clip is left as it is,
    also one that another run registers at the same moment: only the run that inserted the row writes
    its ``ingested`` event."""
    created = insert_if_absent(
        session,
        Clip,
        {
            "id": clip_id,
            "video_id": video_id,
            "start_frame": start_frame,
            "end_frame": end_frame,
            "start_time": start_time,
            "n_frames": n_frames,
            "uri": uri,
            "stage": "ingested",
        },
    )
    if created:
        _add_event(session, clip_id, "ingested", "ok", run_id, actor, details)
    return get_clip(session, clip_id), created


def _add_event(
    session: Session,
    clip_id: str,
    stage: str,
    status: str,
    run_id: str | None,
    actor: str | None,
    details: dict[str, Any] | None,
) -> ClipEvent:
    event = ClipEvent(
        clip_id=clip_id,
        stage=stage,
        status=status,
        run_id=run_id,
        actor=actor,
        details=details or {},
        at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def set_stage(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Move a clip to ``stage`` and append the event that says so."""
    if stage not in CLIP_STAGES:
        raise LineageError(f"unknown clip stage {stage!r}; stages are {', '.join(CLIP_STAGES)}")
    clip = get_clip(session, clip_id)
    clip.stage = stage
    clip.updated_at = utcnow()
    return _add_event(session, clip_id, stage, "ok", run_id, actor, details)


def record_event(
    session: Session,
    clip_id: str,
    stage: str,
    *,
    status: str,
    run_id: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> ClipEvent:
    """Append an event without changing the clip's stage (a failure, a skip, a training run)."""
    get_clip(session, clip_id)
    return _add_event(session, clip_id, stage, status, run_id, actor, details)


@dataclass(frozen=True, slots=True)
class ClipChange:
    """One event of a bulk write: ``moves`` (the default) is :func:`set_stage`, else :func:`record_event`."""

    clip_id: str
    stage: str
    details: dict[str, Any] | None = None
    status: str = "ok"
    moves: bool = True


def set_stages(
    session: Session,
    changes: Sequence[ClipChange],
    *,
    run_id: str | None = None,
    actor: str | None = None,
) -> int:
    """The bulk form of :func:`set_stage` and :func:`record_event` for a task that moves many clips:
    the same clip and event rows as calling them once per change, in order, in a few statements
    whatever the number of clips (one lookup, one UPDATE per target stage, one INSERT of the events).

    Every change of the call shares one timestamp (``at`` and the moved clips' ``updated_at``); event
    ids follow the order of ``changes``; a clip moved twice ends in its last stage. Unknown clips
    (:class:`NotFoundError`, naming them) and stages (:class:`LineageError`) are refused before
    anything is written. Returns the number of events written.
    """
    if not changes:
        return 0
    for change in changes:
        if change.moves and change.stage not in CLIP_STAGES:
            raise LineageError(f"unknown clip stage {change.stage!r}; stages are {', '.join(CLIP_STAGES)}")
        if change.moves and change.status != "ok":
            raise LineageError(f"a stage change is an 'ok' event, not {change.status!r}; use moves=False")
    session.flush()
    postgres = session.get_bind().dialect.name == "postgresql"
    ids = list(dict.fromkeys(change.clip_id for change in changes))
    known = _existing_clip_ids(session, ids, postgres=postgres)
    missing = [clip_id for clip_id in ids if clip_id not in known]
    if missing:
        shown = ", ".join(repr(clip_id) for clip_id in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise NotFoundError(f"no clip {shown}{more} in the lineage database; see `dataengine clips list`")
    now = utcnow()
    final: dict[str, str] = {}
    for change in changes:
        if change.moves:
            final[change.clip_id] = change.stage
    by_stage: dict[str, list[str]] = {}
    for clip_id, stage in final.items():
        by_stage.setdefault(stage, []).append(clip_id)
    for stage, clip_ids in by_stage.items():
        _update_stage(session, clip_ids, stage, now, postgres=postgres)
    _insert_events(session, changes, run_id, actor, now, postgres=postgres)
    day, run_key = now.date(), day_run_key(run_id)
    count_events(session, Counter((day, c.stage, c.status, run_key) for c in changes))
    refresh_review_totals(session.connection(), [c.clip_id for c in changes if is_review(c.stage, c.status)])
    # The UPDATE went past the ORM: clips this session already holds must show their new stage.
    for held in list(session.identity_map.values()):
        if isinstance(held, Clip) and held.id in final:
            set_committed_value(held, "stage", final[held.id])
            set_committed_value(held, "updated_at", now)
    return len(changes)


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield list(ids[start : start + _IN_CHUNK])


def _existing_clip_ids(session: Session, ids: list[str], *, postgres: bool) -> set[str]:
    if postgres:
        # One array parameter instead of one parameter per id: nothing to chunk, one round trip.
        query = text("SELECT id FROM clips WHERE id = ANY(:ids)").bindparams(ids=ids)
        return set(session.scalars(query))
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(session.scalars(select(Clip.id).where(Clip.id.in_(chunk))))
    return found


def _update_stage(session: Session, clip_ids: list[str], stage: str, now: Any, *, postgres: bool) -> None:
    table = cast(Table, Clip.__table__)
    if postgres:
        statement = (
            update(table)
            .where(text("id = ANY(:ids)").bindparams(bindparam("ids", value=clip_ids)))
            .values(stage=stage, updated_at=now)
        )
        session.execute(statement)
        return
    for chunk in _chunks(clip_ids):
        session.execute(update(table).where(table.c.id.in_(chunk)).values(stage=stage, updated_at=now))


# One INSERT of every event from parallel arrays: a few round trips however many events (an
# executemany of multi-row VALUES compiles and sends a statement per batch of rows).
_INSERT_EVENTS = text(
    "INSERT INTO clip_events (clip_id, stage, status, run_id, actor, details, at) "
    "SELECT e.clip_id, e.stage, e.status, :run_id, :actor, CAST(e.details AS JSONB), :at "
    "FROM unnest(CAST(:clip_ids AS TEXT[]), CAST(:stages AS TEXT[]), CAST(:statuses AS TEXT[]), "
    "CAST(:details AS TEXT[])) WITH ORDINALITY AS e(clip_id, stage, status, details, n) ORDER BY e.n"
)


def _insert_events(
    session: Session,
    changes: Sequence[ClipChange],
    run_id: str | None,
    actor: str | None,
    now: Any,
    *,
    postgres: bool,
) -> None:
    if postgres:
        session.execute(
            _INSERT_EVENTS,
            {
                "run_id": run_id,
                "actor": actor,
                "at": now,
                "clip_ids": [c.clip_id for c in changes],
                "stages": [c.stage for c in changes],
                "statuses": [c.status for c in changes],
                "details": [json.dumps(c.details or {}) for c in changes],
            },
        )
        return
    rows = [
        {
            "clip_id": c.clip_id,
            "stage": c.stage,
            "status": c.status,
            "run_id": run_id,
            "actor": actor,
            "details": c.details or {},
            "at": now,
        }
        for c in changes
    ]
    session.execute(insert(cast(Table, ClipEvent.__table__)), rows)


#: (UTC day, stage, status, run key) of an event: the key of ``clip_event_days``.
DayKey = tuple[date, str, str, str]
_MAP_INDEX = re.compile(r"\[\d+\]$")


def day_run_key(run_id: str | None) -> str:
    """The run of ``clip_event_days``: the run id without a mapped task's index ("" for none), since the
    funnel links runs, not the mapped task instances of one run."""
    return _MAP_INDEX.sub("", run_id or "")


def _day_key(event: ClipEvent) -> DayKey:
    return (event.at.astimezone(UTC).date(), event.stage, event.status, day_run_key(event.run_id))


def count_events(session: Session, counts: Counter[DayKey]) -> None:
    """Add ``counts`` to ``clip_event_days`` in the caller's transaction (one upsert statement).

    Keys go in sorted order: two transactions that add to the same rows lock them in the same order.
    """
    if not counts:
        return
    rows = [
        {"day": day, "stage": stage, "status": status, "run_key": run_key, "events": n}
        for (day, stage, status, run_key), n in sorted(counts.items())
    ]
    table = cast(Table, ClipEventDay.__table__)
    dialect = session.get_bind().dialect.name
    statement: Any = (postgresql if dialect == "postgresql" else sqlite).insert(table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "stage", "status", "run_key"],
        set_={"events": table.c.events + statement.excluded.events},
    )
    # On the flush's own connection: this also runs from the after-flush hook, inside a flush.
    session.connection().execute(statement)


def count_flushed_events(session: Session, _flush_context: Any) -> None:
    """After-flush hook of the lineage sessions (``Database``): every event the ORM inserted is counted
    in ``clip_event_days`` in the same transaction, whoever added it; and the review totals of the
    clips whose ``reviewed`` events or annotation versions it inserted are recomputed."""
    counts = Counter(_day_key(obj) for obj in session.new if isinstance(obj, ClipEvent))
    count_events(session, counts)
    reviews = [
        obj.clip_id
        for obj in session.new
        if isinstance(obj, AnnotationVersion)
        or (isinstance(obj, ClipEvent) and is_review(obj.stage, obj.status))
    ]
    if reviews:
        refresh_review_totals(session.connection(), reviews)


def is_review(stage: str, status: str) -> bool:
    """Whether an event can count on the models page (``lineage.review_totals``)."""
    return stage == "reviewed" and status == "ok"


def recount_event_days(session: Session) -> None:
    """Rebuild ``clip_event_days`` from ``clip_events`` (after rows were inserted past this module,
    e.g. a benchmark's bulk fill); migration 0004 does the same for an existing database."""
    session.flush()
    session.execute(delete(ClipEventDay))
    counts: Counter[DayKey] = Counter()
    query = select(ClipEvent.at, ClipEvent.stage, ClipEvent.status, ClipEvent.run_id)
    for at, stage, status, run_id in session.execute(query):
        counts[(at.astimezone(UTC).date(), stage, status, day_run_key(run_id))] += 1
    keys = sorted(counts)
    for start in range(0, len(keys), 1000):
        count_events(session, Counter({key: counts[key] for key in keys[start : start + 1000]}))


@dataclass(frozen=True, slots=True)
class DayStageCount:
    """The ``ok`` events of one stage on one UTC day: how many, from how many runs, the busiest runs."""

    day: date
    stage: str
    events: int
    n_runs: int
    #: Up to ``top`` (run key, events), most events first, then by run key.
    top_runs: list[tuple[str, int]]


def day_stage_counts(session: Session, start: date, end: date, *, top: int = 3) -> list[DayStageCount]:
    """The ``ok`` events per stage of each UTC day ``start <= day <= end``, from ``clip_event_days``
    (two aggregate queries: a month at 1M clips is ~30,000 rows of counts, never sent to Python)."""
    ok = (ClipEventDay.day >= start, ClipEventDay.day <= end, ClipEventDay.status == "ok")
    named = case((ClipEventDay.run_key != "", 1), else_=0)
    totals = session.execute(
        select(ClipEventDay.day, ClipEventDay.stage, func.sum(ClipEventDay.events), func.sum(named))
        .where(*ok)
        .group_by(ClipEventDay.day, ClipEventDay.stage)
    )
    out = {(day, stage): DayStageCount(day, stage, int(n), int(runs), []) for day, stage, n, runs in totals}
    # Code-point order of run keys, as Python sorts strings (PostgreSQL's default follows the locale).
    binary = "C" if session.get_bind().dialect.name == "postgresql" else "BINARY"
    rank = (
        func.row_number()
        .over(
            partition_by=(ClipEventDay.day, ClipEventDay.stage),
            order_by=(ClipEventDay.events.desc(), ClipEventDay.run_key.collate(binary)),
        )
        .label("rank")
    )
    ranked = (
        select(ClipEventDay.day, ClipEventDay.stage, ClipEventDay.run_key, ClipEventDay.events, rank)
        .where(*ok, ClipEventDay.run_key != "")
        .subquery()
    )
    query = select(ranked.c.day, ranked.c.stage, ranked.c.run_key, ranked.c.events).where(
        ranked.c.rank <= top
    )
    for day, stage, run_key, n in session.execute(query.order_by(ranked.c.rank)):
        out[(day, stage)].top_runs.append((run_key, int(n)))
    return list(out.values())


def list_clips(
    session: Session,
    *,
    stage: str | Sequence[str] | None = None,
    video_id: str | None = None,
    clip_ids: Iterable[str] | None = None,
) -> list[Clip]:
    """Clips filtered by stage(s), video or ids, ordered by id."""
    query = select(Clip).order_by(Clip.id)
    if isinstance(stage, str):
        query = query.where(Clip.stage == stage)
    elif stage is not None:
        query = query.where(Clip.stage.in_(list(stage)))
    if video_id is not None:
        query = query.where(Clip.video_id == video_id)
    if clip_ids is not None:
        query = query.where(Clip.id.in_(list(clip_ids)))
    return list(session.scalars(query))


def clip_events(session: Session, clip_id: str) -> list[ClipEvent]:
    """A clip's events, oldest first."""
    query = select(ClipEvent).where(ClipEvent.clip_id == clip_id).order_by(ClipEvent.id)
    return list(session.scalars(query))


def clip_stages(session: Session, clip_ids: Iterable[str]) -> dict[str, str]:
    """The current stage of each of ``clip_ids`` that exists (one query per few thousand ids)."""
    ids = list(clip_ids)
    found: dict[str, str] = {}
    for chunk in _chunks(ids):
        found.update(
            (clip_id, stage)
            for clip_id, stage in session.execute(select(Clip.id, Clip.stage).where(Clip.id.in_(chunk)))
        )
    return found


def clips_ever_in_stage(session: Session, clip_ids: Iterable[str], stage: str) -> set[str]:
    """Which of ``clip_ids`` have an event of ``stage`` (whatever their stage is now)."""
    ids = list(clip_ids)
    found: set[str] = set()
    # In chunks: a dataset build asks about every clip, and SQLite caps the parameters of one statement.
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        query = select(ClipEvent.clip_id).where(ClipEvent.clip_id.in_(chunk), ClipEvent.stage == stage)
        found.update(session.scalars(query))
    return found


_IN_CHUNK = 5000


def recently_ingested(session: Session, limit: int) -> list[str]:
    """Up to ``limit`` clip ids, most recently ingested first, that are not quarantined."""
    ingested_at = func.max(ClipEvent.at).label("at")
    query = (
        select(ClipEvent.clip_id, ingested_at)
        .join(Clip, Clip.id == ClipEvent.clip_id)
        .where(ClipEvent.stage == "ingested", Clip.stage != "quarantined")
        .group_by(ClipEvent.clip_id)
        .order_by(ingested_at.desc(), ClipEvent.clip_id)
        .limit(limit)
    )
    return [row.clip_id for row in session.execute(query)]
