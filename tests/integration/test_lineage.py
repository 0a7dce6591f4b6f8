"""Lineage schema and aggregate functions on SQLite and on PostgreSQL (the same tests on both)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.annotations import annotation_versions, latest_annotation, record_annotation
from dataengine.lineage.clips import clip_events, get_clip, list_clips, record_event, register_clip, set_stage
from dataengine.lineage.datasets import (
    clip_datasets,
    create_dataset,
    dataset_members,
    get_dataset,
    next_dataset_version,
)
from dataengine.lineage.db import HEAD_REVISION, Database, open_database
from dataengine.lineage.model_registry import (
    get_model,
    list_models,
    promoted_model,
    register_model,
    set_model_status,
)
from dataengine.lineage.models import Base, ClipEvent, Dataset, TriggerScore
from dataengine.lineage.quarantine import quarantine
from dataengine.lineage.reviews import finish_review_task, review_tasks, upsert_review_task
from dataengine.lineage.triggers import record_trigger_score, trigger_scores
from dataengine.lineage.videos import get_video, register_video
from dataengine.lineage.views.reports import clip_history, quarantine_list, status_summary

VIDEO = "3fa2c1d9e0b7a455"


def _clip(db: Database, start: int = 0, *, video: str = VIDEO) -> str:
    clip_id = f"{video}-{start:07d}"
    with db.session() as s:
        if get_video(s, video) is None:
            register_video(
                s, video_id=video, uri=f"file:///v/{video}.mp4", sha256=video * 4, status="ingested"
            )
        register_clip(
            s,
            clip_id=clip_id,
            video_id=video,
            start_frame=start,
            end_frame=start + 100,
            start_time=start / 10,
            n_frames=100,
            uri=f"file:///store/clips/{clip_id}",
            run_id="r/1",
        )
    return clip_id


def test_migrations_create_every_table_and_match_the_models(db: Database) -> None:
    assert db.current_revision() == HEAD_REVISION
    expected = {
        "videos",
        "clips",
        "clip_events",
        "trigger_scores",
        "annotation_versions",
        "review_tasks",
        "datasets",
        "dataset_clips",
        "models",
        "quarantine",
    }
    assert expected <= set(db.table_names())
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migrating_twice_is_a_no_op(database_url: str) -> None:
    first = open_database(database_url)
    second = open_database(database_url)
    assert second.current_revision() == HEAD_REVISION
    first.dispose()
    second.dispose()


def test_head_revision_is_the_head_of_the_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from dataengine.lineage.db import alembic_config

    assert ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() == HEAD_REVISION


def test_a_database_at_the_newest_revision_opens_without_loading_alembic(database_url: str) -> None:
    open_database(database_url).dispose()
    probe = (
        "import sys; from dataengine.lineage.db import open_database; "
        f"d = open_database({database_url!r}); print(d.current_revision(), 'alembic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == [HEAD_REVISION, "False"]


def test_a_database_at_an_older_revision_is_still_migrated(database_url: str) -> None:
    from alembic import command

    from dataengine.lineage.db import alembic_config

    open_database(database_url).dispose()
    command.downgrade(alembic_config(database_url), "0002")
    older = Database(database_url)
    assert older.current_revision() == "0002"
    older.migrate()
    assert older.current_revision() == HEAD_REVISION
    assert "origin" in {c["name"] for c in inspect(older.engine).get_columns("models")}
    older.dispose()


def test_register_clip_is_idempotent_and_writes_one_event(db: Database) -> None:
    clip_id = _clip(db)
    _clip(db)
    with db.session() as s:
        events = clip_events(s, clip_id)
        assert [(e.stage, e.status, e.run_id) for e in events] == [("ingested", "ok", "r/1")]
        assert get_clip(s, clip_id).stage == "ingested"


def test_stage_changes_are_recorded_in_order(db: Database) -> None:
    clip_id = _clip(db)
    with db.session() as s:
        set_stage(s, clip_id, "scored", run_id="r/2", actor="airflow", details={"n": 1})
        set_stage(s, clip_id, "selected", run_id="r/2", details={"trigger": "flicker"})
        record_event(s, clip_id, "autolabel", status="failed", details={"error": "x"})
    with db.session() as s:
        assert get_clip(s, clip_id).stage == "selected"
        events = clip_events(s, clip_id)
        assert [e.stage for e in events] == ["ingested", "scored", "selected", "autolabel"]
        assert events[2].details == {"trigger": "flicker"}
        assert events[1].actor == "airflow"
        assert events[3].status == "failed"
        assert events[0].at.tzinfo is not None


def test_stage_change_rolls_back_with_its_transaction(db: Database) -> None:
    clip_id = _clip(db)

    def crashing_task() -> None:
        with db.session() as s:
            set_stage(s, clip_id, "scored")
            raise RuntimeError("task crashed")

    with pytest.raises(RuntimeError):
        crashing_task()
    with db.session() as s:
        assert get_clip(s, clip_id).stage == "ingested"
        assert s.scalar(select(func.count()).select_from(ClipEvent)) == 1


def test_unknown_stage_and_clip_are_clear_errors(db: Database) -> None:
    clip_id = _clip(db)
    with db.session() as s:
        with pytest.raises(LineageError, match="unknown clip stage 'done'"):
            set_stage(s, clip_id, "done")
        with pytest.raises(NotFoundError, match="no clip 'nope'"):
            get_clip(s, "nope")


def test_list_clips_filters(db: Database) -> None:
    a, b = _clip(db, 0), _clip(db, 100)
    c = _clip(db, 0, video="00000000000000ff")
    with db.session() as s:
        set_stage(s, b, "scored")
        assert [x.id for x in list_clips(s)] == sorted([a, b, c])
        assert [x.id for x in list_clips(s, stage="scored")] == [b]
        assert [x.id for x in list_clips(s, stage=["scored", "ingested"], video_id=VIDEO)] == [a, b]
        assert [x.id for x in list_clips(s, clip_ids=[c])] == [c]


def test_trigger_scores_are_upserts(db: Database) -> None:
    clip_id = _clip(db)
    with db.session() as s:
        record_trigger_score(s, clip_id=clip_id, trigger="flicker", score=0.2, frames=[1], model_id="m1")
        record_trigger_score(s, clip_id=clip_id, trigger="flicker", score=0.7, frames=[2, 3], model_id="m1")
        record_trigger_score(s, clip_id=clip_id, trigger="brightness", score=0.1)
        record_trigger_score(s, clip_id=clip_id, trigger="brightness", score=0.3)
        record_trigger_score(s, clip_id=clip_id, trigger="flicker", score=0.1, model_id="m2")
    with db.session() as s:
        rows = {(t.trigger, t.model_id): (t.score, t.frames) for t in trigger_scores(s, clip_id)}
        assert rows == {
            ("flicker", "m1"): (0.7, [2, 3]),
            ("brightness", None): (0.3, []),
            ("flicker", "m2"): (0.1, []),
        }
        assert s.scalar(select(func.count()).select_from(TriggerScore)) == 3


def test_annotation_versions_are_immutable(db: Database) -> None:
    clip_id = _clip(db)
    kwargs: dict[str, Any] = dict(
        clip_id=clip_id, uri="u1", source="autolabel", parent_version=None, n_frames=5, n_boxes=3
    )
    with db.session() as s:
        _, created = record_annotation(s, version=1, sha256="a" * 64, producer={"models": ["m"]}, **kwargs)
        assert created
        _, created = record_annotation(s, version=1, sha256="a" * 64, producer={"models": ["m"]}, **kwargs)
        assert not created
        with pytest.raises(LineageError, match="immutable"):
            record_annotation(s, version=1, sha256="b" * 64, producer={}, **kwargs)
    with db.session() as s:
        record_annotation(
            s,
            clip_id=clip_id,
            version=2,
            uri="u2",
            sha256="c" * 64,
            source="review",
            parent_version=1,
            producer={"reviewers": ["ann-7"]},
            n_frames=5,
            n_boxes=4,
        )
        assert [a.version for a in annotation_versions(s, clip_id)] == [1, 2]
        latest = latest_annotation(s, clip_id)
        assert latest is not None
        assert latest.version == 2
        assert latest.producer == {"reviewers": ["ann-7"]}
        autolabel = latest_annotation(s, clip_id, sources=["autolabel"])
        assert autolabel is not None
        assert autolabel.version == 1


def test_review_tasks(db: Database) -> None:
    clip_id = _clip(db)
    with db.session() as s:
        task, created = upsert_review_task(
            s, clip_id=clip_id, platform="local", exported_version=1, external_id="t1"
        )
        again, created_again = upsert_review_task(
            s, clip_id=clip_id, platform="local", exported_version=1, external_id="t1"
        )
        assert created
        assert not created_again
        assert task.id == again.id
        assert [t.clip_id for t in review_tasks(s, platform="local", status="exported")] == [clip_id]
        finish_review_task(s, task, imported_version=2)
    with db.session() as s:
        done = review_tasks(s, status="imported")
        assert [(t.imported_version, t.error) for t in done] == [(2, None)]
        assert done[0].imported_at is not None


def test_datasets_and_models(db: Database) -> None:
    a, b = _clip(db, 0), _clip(db, 100)
    with db.session() as s:
        assert next_dataset_version(s, "default") == 1
        create_dataset(
            s,
            name="default",
            version=1,
            manifest_uri="u",
            manifest_sha256="0" * 64,
            counts={"clips": 2},
            members=[(a, 2, "train"), (b, 1, "val")],
        )
        with pytest.raises(LineageError, match="immutable"):
            create_dataset(
                s,
                name="default",
                version=1,
                manifest_uri="u",
                manifest_sha256="0" * 64,
                counts={},
                members=[],
            )
    with db.session() as s:
        assert next_dataset_version(s, "default") == 2
        assert get_dataset(s, "default").id == "default@1"
        with pytest.raises(NotFoundError, match="default@7"):
            get_dataset(s, "default", 7)
        members = [(m.clip_id, m.annotation_version, m.split) for m in dataset_members(s, "default@1")]
        assert members == sorted([(a, 2, "train"), (b, 1, "val")])
        assert [d.dataset_id for d in clip_datasets(s, a)] == ["default@1"]
        assert s.scalar(select(func.count()).select_from(Dataset)) == 1

        assert promoted_model(s) is None
        register_model(s, model_id="m1", checkpoint_uri="c1", dataset_id="default@1", parent_model_id=None)
        set_model_status(s, "m1", "promoted", metrics={"map": 0.3})
        register_model(s, model_id="m2", checkpoint_uri="c2", dataset_id="default@1", parent_model_id="m1")
    with db.session() as s:
        promoted = promoted_model(s)
        assert promoted is not None
        assert promoted.id == "m1"
        assert promoted.metrics == {"map": 0.3}
        set_model_status(s, "m2", "promoted")
    with db.session() as s:
        statuses = {m.id: m.status for m in list_models(s)}
        assert statuses == {"m1": "retired", "m2": "promoted"}
        with pytest.raises(LineageError, match="unknown model status"):
            set_model_status(s, "m2", "great")
        with pytest.raises(NotFoundError):
            get_model(s, "m9")


def test_quarantine_moves_clip_and_is_listed_once(db: Database) -> None:
    clip_id = _clip(db)
    with db.session() as s:
        quarantine(
            s,
            kind="video",
            input="landing/bad.mp4",
            reason="zero-byte file",
            stage="ingest",
            video_id="e3b0c44298fc1c14",
        )
        quarantine(
            s,
            kind="video",
            input="landing/bad.mp4",
            reason="zero-byte file (again)",
            stage="ingest",
            video_id="e3b0c44298fc1c14",
        )
        quarantine(
            s,
            kind="clip",
            input=f"clips/{clip_id}/frames/000000.jpg",
            reason="corrupt jpeg",
            stage="triggers",
            clip_id=clip_id,
        )
    with db.session() as s:
        items = quarantine_list(s)
        assert [(i["input"], i["reason"]) for i in items] == [
            ("landing/bad.mp4", "zero-byte file (again)"),
            (f"clips/{clip_id}/frames/000000.jpg", "corrupt jpeg"),
        ]
        assert get_clip(s, clip_id).stage == "quarantined"
        assert clip_events(s, clip_id)[-1].details == {"stage": "triggers", "reason": "corrupt jpeg"}


def test_reports(db: Database) -> None:
    clip_id = _clip(db)
    _clip(db, 100)
    with db.session() as s:
        set_stage(s, clip_id, "scored")
        record_trigger_score(s, clip_id=clip_id, trigger="flicker", score=0.5, model_id="m1")
        record_annotation(
            s,
            clip_id=clip_id,
            version=1,
            uri="u1",
            sha256="a" * 64,
            source="autolabel",
            parent_version=None,
            producer={},
            n_frames=1,
            n_boxes=2,
        )
        register_model(
            s, model_id="m1", checkpoint_uri="c", dataset_id=None, parent_model_id=None, status="promoted"
        )
    with db.session() as s:
        summary = status_summary(s)
        assert summary["videos"] == 1
        assert summary["clips"] == 2
        assert summary["quarantined"] == 0
        assert summary["stages"]["ingested"] == 1
        assert summary["stages"]["scored"] == 1
        assert summary["stages"]["in_dataset"] == 0
        assert [m["id"] for m in summary["models"]] == ["m1"]
        history = clip_history(s, clip_id)
        assert history["clip"]["clip_id"] == clip_id
        assert history["clip"]["end_frame"] == 100
        assert [e["stage"] for e in history["events"]] == ["ingested", "scored"]
        assert history["annotations"] == [
            {
                "version": 1,
                "source": "autolabel",
                "uri": "u1",
                "n_boxes": 2,
                "n_frames": 1,
                "parent_version": None,
                "producer": {},
            }
        ]
        assert history["triggers"][0]["trigger"] == "flicker"
        assert history["triggers"][0]["score"] == 0.5


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.session() as s:
        register_video(s, video_id="0" * 16, uri="u", sha256="0" * 64, recorded_at=datetime(2026, 1, 1))
    with db.session() as s:
        video = register_video(
            s, video_id="1" * 16, uri="u", sha256="1" * 64, recorded_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    with db.session() as s:
        stored = get_video(s, video.id)
        assert stored is not None
        assert stored.recorded_at == datetime(2026, 1, 1, tzinfo=UTC)
