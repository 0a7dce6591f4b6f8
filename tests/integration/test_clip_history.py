"""``clip_history`` (``dataengine clip show``, the clip page, ``/api/clips/ID``) gives the same history
as the five queries it replaced on PostgreSQL (``clip_history_by_rows``), value for value, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from dataengine.errors import NotFoundError
from dataengine.lineage.clips import register_clip
from dataengine.lineage.db import Database
from dataengine.lineage.models import AnnotationVersion, ClipEvent, Dataset, DatasetClip, TriggerScore
from dataengine.lineage.videos import register_video
from dataengine.lineage.views.reports import clip_history, clip_history_by_rows

VIDEO = "00000000000000dd"
RICH, BARE = f"{VIDEO}-0000000", f"{VIDEO}-0000100"
IST = timezone(timedelta(hours=5, minutes=30))


def _fill(db: Database) -> None:
    with db.session() as s:
        register_video(s, video_id=VIDEO, uri="file:///v.mp4", sha256="d" * 64, status="ingested")
        for n, clip_id in enumerate((RICH, BARE)):
            register_clip(
                s, clip_id=clip_id, video_id=VIDEO, start_frame=n * 100, end_frame=n * 100 + 100,
                start_time=n * 4.0, n_frames=100, uri=f"file:///store/clips/{clip_id}", run_id="ingest/r[0]",
            )  # fmt: skip
        events = [
            ("scored", "ok", datetime(2026, 12, 1, 23, 59, 59, 500000, tzinfo=UTC), "t/r/score", "airflow",
             {"scores": {"flicker": 0.1 + 0.2, "tiny": 1e-7, "whole": 1.0, "big": 2**53 + 1}}),
            ("selected", "ok", datetime(2026, 12, 2, 5, 30, tzinfo=IST), None, None, {}),
            ("autolabel", "failed", datetime(2026, 12, 2, 1, 2, 3, 4, tzinfo=UTC), "a/r", "cli",
             {"error": 'tab\\t "quoted" é ✓', "nested": [1, [2.5, None, True], {"k": "v"}]}),
        ]  # fmt: skip
        for stage, status, at, run_id, actor, details in events:
            s.add(ClipEvent(clip_id=RICH, stage=stage, status=status, at=at, run_id=run_id, actor=actor,
                            details=details))  # fmt: skip
        for version, parent in ((2, 1), (1, None), (3, 2)):  # not in version order
            s.add(AnnotationVersion(
                clip_id=RICH, version=version, uri=f"annotations/{RICH}/v{version}.json",
                sha256=f"{version}" * 64,
                source="review" if parent else "autolabel", parent_version=parent,
                producer={"models": ["m-1", 7], "thresholds": {"person": 0.35}} if version == 1 else {},
                n_frames=4, n_boxes=10 - version,
            ))  # fmt: skip
        scores = (("uncertainty", 1 / 3, "m-1"), ("flicker", 1.0, None), ("rare", 5e-324, "m-2"),
                  ("novelty", float("inf"), None))  # fmt: skip
        for trigger, score, model_id in scores:
            s.add(TriggerScore(clip_id=RICH, trigger=trigger, score=score, frames=[0, 12, 49],
                               model_id=model_id, model_key=model_id or "", details={}))  # fmt: skip
        s.flush()
        for name in ("b-set", "B-set", "a-set"):  # upper and lower case: the database's own order
            s.add(Dataset(id=f"{name}@1", name=name, version=1, manifest_uri="m", manifest_sha256="0" * 64))
            s.flush()
            s.add(DatasetClip(dataset_id=f"{name}@1", clip_id=RICH, annotation_version=3, split="train"))


def test_clip_history_is_the_same_as_the_five_queries(db: Database) -> None:
    _fill(db)
    with db.session() as s:
        if db.engine.dialect.name == "postgresql":  # the session's zone must not change the times
            s.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
        rich, bare = clip_history(s, RICH), clip_history(s, BARE)
    with db.session() as s:
        assert rich == clip_history_by_rows(s, RICH)
        assert bare == clip_history_by_rows(s, BARE)
    assert [(e["stage"], e["at"]) for e in rich["events"]] == [
        ("ingested", rich["events"][0]["at"]),
        ("scored", "2026-12-01T23:59:59.500000+00:00"),
        ("selected", "2026-12-02T00:00:00+00:00"),
        ("autolabel", "2026-12-02T01:02:03.000004+00:00"),
    ]
    assert rich["events"][1]["details"]["scores"]["flicker"] == 0.1 + 0.2
    assert rich["events"][1]["details"]["scores"]["big"] == 2**53 + 1
    assert rich["events"][3]["details"]["nested"] == [1, [2.5, None, True], {"k": "v"}]
    assert [a["version"] for a in rich["annotations"]] == [1, 2, 3]
    assert rich["annotations"][0]["producer"] == {"models": ["m-1", 7], "thresholds": {"person": 0.35}}
    assert [(t["trigger"], t["score"]) for t in rich["triggers"]] == [
        ("uncertainty", 1 / 3), ("flicker", 1.0), ("rare", 5e-324), ("novelty", float("inf")),
    ]  # fmt: skip
    assert rich["triggers"][0]["frames"] == [0, 12, 49]
    assert sorted(d["dataset_id"] for d in rich["datasets"]) == ["B-set@1", "a-set@1", "b-set@1"]
    assert (bare["annotations"], bare["triggers"], bare["datasets"]) == ([], [], [])
    assert [e["stage"] for e in bare["events"]] == ["ingested"]
    assert bare["clip"]["start_frame"] == 100


def test_an_unknown_clip_is_not_found(db: Database) -> None:
    with db.session() as s, pytest.raises(NotFoundError, match="no clip '00000000000000dd-0009999'"):
        clip_history(s, f"{VIDEO}-0009999")


@pytest.mark.postgres
def test_an_idle_connection_the_server_closed_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pooled connections are pinged only after sitting idle (not at every checkout, ``db.make_engine``);
    a dead one is still replaced before a session gets it."""
    from dataengine.lineage import db as db_module

    database = db_module.open_database(postgres_url)
    database.dispose()  # one pooled connection from here on
    try:
        with database.session() as s:
            first = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = create_engine(postgres_url)
        with admin.begin() as connection:  # the server ends the pooled connection's session
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        admin.dispose()
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)
        with database.session() as s:
            second = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        database.dispose()
