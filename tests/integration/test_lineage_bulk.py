"""The bulk stage-change path (``set_stages``) writes the same lineage rows as ``set_stage`` and
``record_event`` called once per clip, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

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
from dataengine.lineage.db import Database
from dataengine.lineage.models import utcnow
from dataengine.lineage.videos import register_video

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
