"""The bulk stage-change path (``set_stages``) writes the same lineage rows as ``set_stage`` and
``record_event`` called once per clip, and ``clip_event_days`` counts every event (the funnel reads it),
on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage import clips as clips_module
from dataengine.lineage.clips import (
    ClipChange,
    clip_events,
    get_clip,
    list_clips,
    record_event,
    register_clip,
    set_stage,
    set_stages,
)
from dataengine.lineage.db import HEAD_REVISION, Database
from dataengine.lineage.models import Base, ClipEvent, ClipEventDay, utcnow
from dataengine.lineage.videos import register_video
from dataengine.lineage.views.funnel import funnel_days

PER_CLIP, BULK = "00000000000000aa", "00000000000000bb"
N_CLIPS = 12


def _clips(db: Database, video: str) -> list[str]:
    ids = [f"{video}-{i * 100:07d}" for i in range(N_CLIPS)]
    with db.session() as s:
        register_video(s, video_id=video, uri=f"file:///v/{video}.mp4", sha256=video * 4, status="ingested")
        for i, clip_id in enumerate(ids):
            register_clip(
                s, clip_id=clip_id, video_id=video, start_frame=i * 100, end_frame=i * 100 + 100,
                start_time=i * 4.0, n_frames=100, uri=f"file:///store/clips/{clip_id}", run_id="r/ingest",
            )  # fmt: skip
    return ids


def _changes(ids: list[str]) -> list[ClipChange]:
    """A task's worth of changes: a selection (two stages), events without a move, a clip moved twice."""
    changes = [
        ClipChange(clip_id, "selected" if i % 3 == 0 else "rejected", {"rank": i, "score": i / 10})
        for i, clip_id in enumerate(ids)
    ]
    changes.append(
        ClipChange(ids[1], "autolabel", {"error": 'x\ttab \\ "quoted" é'}, status="failed", moves=False)
    )
    changes.append(ClipChange(ids[2], "in_dataset", None, moves=False))
    changes.append(ClipChange(ids[0], "autolabelled", {"nested": {"a": [1, 2.5, None, True]}}))
    return changes


def _apply_per_clip(db: Database, changes: list[ClipChange]) -> None:
    with db.session() as s:
        for c in changes:
            if c.moves:
                set_stage(s, c.clip_id, c.stage, run_id="r/task", actor="airflow", details=c.details)
            else:
                record_event(
                    s,
                    c.clip_id,
                    c.stage,
                    status=c.status,
                    run_id="r/task",
                    actor="airflow",
                    details=c.details,
                )


def _rows(db: Database, video: str, since: datetime) -> tuple[list[Any], list[Any]]:
    """The clips and the events written since ``since``, with the video id taken out of the clip ids."""
    with db.session() as s:
        clips = [(c.id.split("-")[1], c.stage, c.updated_at >= since) for c in list_clips(s, video_id=video)]
        events = []
        for c in list_clips(s, video_id=video):
            for e in clip_events(s, c.id):
                if e.at >= since:
                    events.append((e.id, c.id.split("-")[1], e.stage, e.status, e.run_id, e.actor, e.details))
    events.sort()
    # Event ids differ between the two videos; their order must not.
    return clips, [event[1:] for event in events]


def test_bulk_writes_the_same_rows_as_per_clip(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    per_clip, bulk = _clips(db, PER_CLIP), _clips(db, BULK)
    # Small chunks, so that the chunked IN lists on SQLite are exercised with a dozen clips.
    monkeypatch.setattr(clips_module, "_IN_CHUNK", 5)
    since = utcnow()
    _apply_per_clip(db, _changes(per_clip))
    with db.session() as s:
        held = get_clip(s, bulk[0])
        assert set_stages(s, _changes(bulk), run_id="r/task", actor="airflow") == N_CLIPS + 3
        # A clip the session already held shows its new stage without a reload.
        assert held.stage == "autolabelled"
    expected, got = _rows(db, PER_CLIP, since), _rows(db, BULK, since)
    assert got == expected
    clips, events = got
    assert [stage for _, stage, _ in clips][:4] == ["autolabelled", "rejected", "rejected", "selected"]
    assert all(moved for _, _, moved in clips)
    assert len(events) == N_CLIPS + 3
    with db.session() as s:
        moved = [e for c in bulk for e in clip_events(s, c) if e.at >= since]
        # One timestamp per bulk call, timezone-aware like every lineage time.
        assert len({e.at for e in moved}) == 1
        assert moved[0].at.tzinfo is not None
        # Untouched clips keep the events they had.
        assert [e.stage for e in clip_events(s, bulk[5])] == ["ingested", "rejected"]


def test_bulk_refuses_unknown_clips_and_stages_before_writing(db: Database) -> None:
    ids = _clips(db, BULK)
    with pytest.raises(NotFoundError, match="no clip 'nope'"), db.session() as s:
        set_stages(s, [ClipChange(ids[0], "selected"), ClipChange("nope", "selected")])
    with pytest.raises(LineageError, match="unknown clip stage 'done'"), db.session() as s:
        set_stages(s, [ClipChange(ids[0], "selected"), ClipChange(ids[1], "done")])
    with pytest.raises(LineageError, match="use moves=False"), db.session() as s:
        set_stages(s, [ClipChange(ids[0], "selected", status="failed")])
    with db.session() as s:
        assert set_stages(s, []) == 0
        assert {c.stage for c in list_clips(s)} == {"ingested"}
        assert [e.stage for e in clip_events(s, ids[0])] == ["ingested"]


def _event_days(db: Database) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """``clip_event_days`` as stored, and as counted from ``clip_events``."""
    with db.session() as s:
        stored = Counter(
            {
                (row.day, row.stage, row.status, row.run_key): row.events
                for row in s.scalars(select(ClipEventDay))
            }
        )
        counted = Counter(
            (e.at.astimezone(UTC).date(), e.stage, e.status, re.sub(r"\[\d+\]$", "", e.run_id or ""))
            for e in s.scalars(select(ClipEvent))
        )
    return stored, counted


def _today() -> date:
    return datetime.now(UTC).date()


def _old_event(clip_id: str, stage: str, days_ago: int, run_id: str | None, status: str = "ok") -> ClipEvent:
    at = datetime.combine(_today(), time(23, 59), tzinfo=UTC) - timedelta(days=days_ago)
    return ClipEvent(clip_id=clip_id, stage=stage, status=status, run_id=run_id, details={}, at=at)


def test_event_days_count_every_event_and_feed_the_funnel(db: Database) -> None:
    """``clip_event_days`` equals the events counted per (UTC day, stage, status, run), whichever way they
    were written (per clip, in bulk, an event row added directly); the funnel reads it and shows what
    counting the events of its window gives."""
    ids = _clips(db, BULK)
    with db.session() as s:
        set_stages(s, _changes(ids), run_id="autolabel/r1/label[3]", actor="airflow")
        set_stages(s, [ClipChange(c, "scored") for c in ids[:4]], run_id="autolabel/r1/label[4]")
        set_stage(s, ids[5], "selected", run_id=None)
        for run in ("b/review", "a/review", "c/review[1]", "c/review[2]", "d/review"):
            set_stages(s, [ClipChange(c, "in_review") for c in ids[8:10]], run_id=run)
        s.add(_old_event(ids[6], "reviewed", 3, "review_import/old/import"))
        s.add(_old_event(ids[6], "reviewed", 3, "review_import/old/import", status="failed"))
        s.add(_old_event(ids[7], "reviewed", 40, "review_import/older/import"))

    def crashing_task() -> None:
        with db.session() as s:
            set_stages(s, [ClipChange(c, "rejected") for c in ids], run_id="r/crashed")
            set_stage(s, ids[0], "in_review", run_id="r/crashed")
            raise RuntimeError("task crashed")  # its events and their counts roll back together

    with pytest.raises(RuntimeError):
        crashing_task()
    stored, counted = _event_days(db)
    assert stored == counted
    assert sum(counted.values()) == N_CLIPS + 15 + 4 + 1 + 10 + 3
    assert not any(run == "r/crashed" for _, _, _, run in stored)
    with db.session() as s:
        for until, days in ((_today(), 14), (_today() - timedelta(days=3), 1), (_today(), 60)):
            first = until - timedelta(days=days - 1)
            expected: dict[str, dict[str, int]] = {}
            runs: dict[tuple[str, str], Counter[str]] = {}
            for e in s.scalars(select(ClipEvent).where(ClipEvent.status == "ok")):
                day = e.at.astimezone(UTC).date()
                if first <= day <= until:
                    counts = expected.setdefault(day.isoformat(), {})
                    counts[e.stage] = counts.get(e.stage, 0) + 1
                    run = re.sub(r"\[\d+\]$", "", e.run_id or "")
                    if run:
                        runs.setdefault((day.isoformat(), e.stage), Counter())[run] += 1
            got = funnel_days(s, until=until, days=days)
            assert [row.day for row in got] == sorted(expected, reverse=True)
            assert {row.day: row.counts for row in got} == expected
            # The three busiest runs of each day and stage, most events first, and how many runs there were.
            assert {(row.day, stage): r for row in got for stage, r in row.runs.items()} == {
                key: sorted(c.items(), key=lambda item: (-item[1], item[0]))[:3] for key, c in runs.items()
            }
            assert {(row.day, stage): n for row in got for stage, n in row.n_runs.items()} == {
                key: len(c) for key, c in runs.items()
            }
        today = funnel_days(s, until=_today(), days=1)[0]
        # The two mapped tasks of one run are one run on the funnel; ties go by run id.
        assert today.runs["scored"] == [("autolabel/r1/label", 4)]
        # More runs than the page names: the busiest three, ties by run id, and how many there were.
        assert today.runs["in_review"] == [("c/review", 4), ("a/review", 2), ("b/review", 2)]
        assert today.n_runs["in_review"] == 4


def test_migration_counts_the_events_of_an_existing_database(database_url: str) -> None:
    """A database at revision 0003 with events gets ``clip_event_days`` computed from them."""
    from alembic import command

    from dataengine.lineage.db import alembic_config

    database = Database(database_url)
    with database.engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    ids = [f"{BULK}-{i:07d}" for i in range(3)]
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    with database.engine.begin() as connection:
        connection.execute(
            insert(Base.metadata.tables["videos"]),
            [
                {
                    "id": BULK,
                    "uri": "u",
                    "sha256": "0" * 64,
                    "status": "ingested",
                    "created_at": at,
                    "updated_at": at,
                }
            ],
        )
        connection.execute(
            insert(Base.metadata.tables["clips"]),
            [
                {"id": c, "video_id": BULK, "start_frame": 0, "end_frame": 1, "start_time": 0.0,
                 "n_frames": 1, "uri": "u", "stage": "scored", "created_at": at, "updated_at": at}
                for c in ids
            ],
        )  # fmt: skip
        connection.execute(
            insert(Base.metadata.tables["clip_events"]),
            [
                {"clip_id": c, "stage": stage, "status": "ok", "run_id": run, "details": {}, "at": at + shift}
                for c in ids
                for stage, run, shift in (
                    ("ingested", None, timedelta(0)),
                    ("scored", "detect_triggers/r/score", timedelta(hours=1)),  # the next UTC day
                )
            ],
        )
    database.migrate()
    assert database.current_revision() == HEAD_REVISION
    stored, counted = _event_days(database)
    database.dispose()
    assert stored == counted
    assert stored == {
        (date(2026, 11, 30), "ingested", "ok", ""): 3,
        (date(2026, 12, 1), "scored", "ok", "detect_triggers/r/score"): 3,
    }
