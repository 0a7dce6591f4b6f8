"""The models page's review totals (``clip_review_totals``, ``model_review_totals``) equal what the
page's former query counted, whichever way and in whichever order the reviews, their events and their
annotation versions were written, and after migration 0006 computes them for an existing database; on
SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select

from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import ClipChange, record_event, register_clip, set_stage, set_stages
from dataengine.lineage.db import HEAD_REVISION, Database
from dataengine.lineage.model_registry import register_model
from dataengine.lineage.models import Base, ClipEvent, ClipReviewTotal, utcnow
from dataengine.lineage.review_totals import by_model, model_review_totals, review_rows, totals_of
from dataengine.lineage.videos import register_video
from dataengine.lineage.views.pages import models_overview

VIDEO = "00000000000000cc"
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _clip(n: int) -> str:
    return f"{VIDEO}-{n * 100:07d}"


def _version(
    s: Any, n: int, version: int, source: str, parent: int | None, models: list[Any], boxes: int
) -> None:
    record_annotation(
        s, clip_id=_clip(n), version=version, uri=f"u/{n}/{version}", sha256=f"{n:02d}{version:02d}" * 16,
        source=source, parent_version=parent, producer={"models": models, "note": "é"}, n_frames=4,
        n_boxes=boxes,
    )  # fmt: skip


def _reviewed(s: Any, n: int, version: int, changed: int | None, **extra: Any) -> None:
    details: dict[str, Any] = {"version": version, "parent_version": 1, **extra}
    if changed is not None:
        details["boxes_changed"] = changed
    set_stage(s, _clip(n), "reviewed", run_id="review_import/r/import", details=details)


def _former(db: Database) -> dict[str, tuple[int, int, int]]:
    """What the models page's former query gave per model (``models_overview`` of revision 0005)."""
    with db.engine.connect() as connection:
        return by_model(totals_of(connection.execute(review_rows())))


Sums = tuple[int, int, int]


def _stored(db: Database) -> tuple[dict[tuple[str, str], Sums], dict[str, Sums]]:
    with db.engine.connect() as connection:
        per_clip = {
            (row.clip_id, row.model_id): (row.reviews, row.boxes_changed, row.boxes_proposed)
            for row in connection.execute(select(ClipReviewTotal.__table__))
        }
        return per_clip, model_review_totals(connection)


def _review_then_fail(db: Database) -> None:
    with db.session() as s:
        _version(s, 5, 1, "autolabel", None, ["m-1"], 3)
        _version(s, 5, 2, "review", 1, ["m-1"], 3)
        _reviewed(s, 5, 2, 1)
        raise RuntimeError("killed")


def _write_history(db: Database) -> None:
    """Reviews written every way the lineage writes them, some in unusual orders."""
    with db.session() as s:
        register_video(s, video_id=VIDEO, uri="file:///v.mp4", sha256="c" * 64, status="ingested")
        for n in range(9):
            register_clip(
                s, clip_id=_clip(n), video_id=VIDEO, start_frame=n * 100, end_frame=n * 100 + 100,
                start_time=n * 4.0, n_frames=100, uri=f"file:///store/clips/{_clip(n)}",
            )  # fmt: skip
        for model_id in ("m-1", "m-2"):
            register_model(s, model_id=model_id, checkpoint_uri=f"models/{model_id}", dataset_id=None,
                           parent_model_id=None)  # fmt: skip
    # 0: autolabel, then a review import (version, then event), as review.importing writes it.
    with db.session() as s:
        _version(s, 0, 1, "autolabel", None, ["m-1"], 10)
    with db.session() as s:
        _version(s, 0, 2, "review", 1, ["m-1"], 9)
        _reviewed(s, 0, 2, 3)
    # 1: an ensemble's labels (both models get the review), reviewed twice; one review corrects the other.
    with db.session() as s:
        _version(s, 1, 1, "autolabel", None, ["m-1", "m-2"], 7)
        _version(s, 1, 2, "review", 1, ["reviewer"], 7)
        _reviewed(s, 1, 2, 2)
        _version(s, 1, 3, "review", 2, ["reviewer"], 6)
        _reviewed(s, 1, 3, 1)
    # 2: labels imported from a file (no boxes_changed) count only once the clip has a review version.
    with db.session() as s:
        _version(s, 2, 1, "autolabel", None, ["m-2"], 5)
        _version(s, 2, 2, "import", 1, ["m-2"], 5)
        _reviewed(s, 2, 2, None)
    assert _stored(db)[1] == {"m-1": (2, 5, 17), "m-2": (1, 2, 7), "reviewer": (1, 1, 7)}  # not clip 2 yet
    with db.session() as s:
        _version(s, 2, 3, "review", 1, ["m-2"], 4)
        _reviewed(s, 2, 3, 4)
    # 3: the event before its versions, and the parent after the review version.
    with db.session() as s:
        _reviewed(s, 3, 2, 6)
    with db.session() as s:
        _version(s, 3, 2, "review", 1, ["m-1"], 8)
    with db.session() as s:
        _version(s, 3, 1, "autolabel", None, ["m-1", 7, "m-unknown"], 12)
    # 4: a failed import is not a review; 5: a rolled-back review leaves nothing.
    with db.session() as s:
        _version(s, 4, 1, "autolabel", None, ["m-1"], 3)
        record_event(s, _clip(4), "reviewed", status="failed", details={"version": 2, "boxes_changed": 9})
    with pytest.raises(RuntimeError, match="killed"):
        _review_then_fail(db)
    # 6, 7: the bulk path; 8: an event the ORM adds directly (as a test or a repair would).
    with db.session() as s:
        for n in (6, 7):
            _version(s, n, 1, "autolabel", None, ["m-2"], 2 + n)
            _version(s, n, 2, "review", 1, ["m-2"], 2 + n)
        changes = [ClipChange(_clip(n), "reviewed", {"version": 2, "boxes_changed": n}) for n in (6, 7)]
        set_stages(s, changes, run_id="review_import/r2/import")
    with db.session() as s:
        _version(s, 8, 1, "autolabel", None, ["m-1"], 1)
        _version(s, 8, 2, "review", 1, ["m-1"], 1)
        details = {"version": 2, "boxes_changed": 1}
        s.add(ClipEvent(clip_id=_clip(8), stage="reviewed", status="ok", details=details, at=utcnow()))
    # Registering a version again (a rerun) changes nothing.
    with db.session() as s:
        _version(s, 0, 2, "review", 1, ["m-1"], 9)


def test_review_totals_equal_the_former_query(db: Database) -> None:
    _write_history(db)
    per_clip, per_model = _stored(db)
    with db.engine.connect() as connection:
        assert per_clip == totals_of(connection.execute(review_rows()))
    assert per_model == _former(db) == by_model(per_clip)
    # reviews, boxes changed, boxes proposed (the parent's boxes):
    # m-1: clip 0 (1, 3, 10), clip 1 v2 (1, 2, 7), clip 3 (1, 6, 12), clip 8 (1, 1, 1)
    # m-2: clip 1 v2 (1, 2, 7), clip 2 twice (2, 0 + 4, 5 + 5), clips 6 and 7 (2, 13, 8 + 9)
    # reviewer: clip 1 v3, which corrected v2; 7 and m-unknown: clip 3 (not models of the page)
    assert per_model == {
        "m-1": (4, 12, 30),
        "m-2": (5, 19, 34),
        "reviewer": (1, 1, 7),
        "7": (1, 6, 12),
        "m-unknown": (1, 6, 12),
    }
    with db.session() as s:
        overview = models_overview(s)
    rows = {row.model.id: (row.reviews, row.boxes_changed, row.boxes_proposed) for row in overview}
    rates = {row.model.id: row.edit_rate for row in overview}
    assert rows == {"m-1": (4, 12, 30), "m-2": (5, 19, 34)}
    assert rates == {"m-1": 12 / 30, "m-2": 19 / 34}


def test_migration_computes_the_totals_of_an_existing_database(database_url: str) -> None:
    """A database at revision 0005 with reviews gets both tables computed by migration 0006."""
    from alembic import command

    from dataengine.lineage.db import alembic_config

    database = Database(database_url)
    with database.engine.begin() as connection:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
    tables = Base.metadata.tables
    with database.engine.begin() as connection:
        connection.execute(
            insert(tables["videos"]),
            [
                {
                    "id": VIDEO,
                    "uri": "u",
                    "sha256": "0" * 64,
                    "status": "ingested",
                    "created_at": AT,
                    "updated_at": AT,
                }
            ],
        )
        connection.execute(
            insert(tables["clips"]),
            [
                {"id": _clip(n), "video_id": VIDEO, "start_frame": 0, "end_frame": 1, "start_time": 0.0,
                 "n_frames": 1, "uri": "u", "stage": "reviewed", "created_at": AT, "updated_at": AT}
                for n in range(3)
            ],
        )  # fmt: skip
        versions = [
            (0, 1, "autolabel", None, ["m-1"], 10), (0, 2, "review", 1, ["m-1"], 8),
            (1, 1, "autolabel", None, ["m-1", "m-2"], 4), (1, 2, "review", 1, [], 4),
            (2, 1, "autolabel", None, ["m-2"], 6), (2, 2, "import", 1, ["m-2"], 6),
        ]  # fmt: skip
        connection.execute(
            insert(tables["annotation_versions"]),
            [
                {"clip_id": _clip(n), "version": v, "uri": "u", "sha256": "0" * 64, "source": source,
                 "parent_version": parent, "producer": {"models": models}, "n_frames": 1, "n_boxes": boxes,
                 "created_at": AT}
                for n, v, source, parent, models, boxes in versions
            ],
        )  # fmt: skip
        connection.execute(
            insert(tables["clip_events"]),
            [
                {"clip_id": _clip(n), "stage": "reviewed", "status": "ok", "run_id": None,
                 "details": details, "at": AT}
                for n, details in (
                    (0, {"version": 2, "boxes_changed": 5}),
                    (1, {"version": 2, "boxes_changed": 1}),
                    (2, {"version": 2}),  # imported labels, on a clip without a review version
                )
            ],
        )  # fmt: skip
    former = _former(database)
    database.migrate()
    assert database.current_revision() == HEAD_REVISION
    per_clip, per_model = _stored(database)
    database.dispose()
    assert per_model == former == by_model(per_clip)
    assert per_model == {"m-1": (2, 6, 14), "m-2": (1, 1, 4)}
