"""The models page's review totals (reviews, boxes changed, boxes proposed per producer model), kept in
``clip_review_totals`` and ``model_review_totals`` by the writes that change them. The caller commits.

A review counts for the models of the annotation version it corrected exactly as the page's former
query counted it (:func:`review_rows`, kept as the definition): a ``reviewed`` ``ok`` event of a clip
that has a ``review`` version, joined to the version the event names and to that version's parent,
whose producer's ``models`` each get one review, the parent's boxes as proposed and the event's
``boxes_changed`` as changed. That depends on the event and on up to three annotation versions, which
may be written in any order, so every write of either recomputes the whole clip (a few rows, by the
``clip_id`` indexes), stores it per clip and adds the difference to the model's row: the result is the
same whatever the order, and writing the same rows twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from dataengine.lineage.models import AnnotationVersion, ClipEvent, ClipReviewTotal, ModelReviewTotal

#: (clip id, model id) -> (reviews, boxes changed, boxes proposed)
Totals = dict[tuple[str, str], tuple[int, int, int]]
_CHUNK = 500


def review_rows(clip_ids: list[str] | None = None) -> Any:
    """The page's former query, per clip: ``(clip_id, producer, reviews, boxes proposed, boxes changed)``
    of the counted reviews of ``clip_ids`` (of every clip when None)."""
    events = (
        select(
            ClipEvent.clip_id,
            ClipEvent.details["version"].as_integer().label("version"),
            ClipEvent.details["boxes_changed"].as_integer().label("changed"),
        )
        .where(
            ClipEvent.clip_id.in_(
                select(AnnotationVersion.clip_id).where(AnnotationVersion.source == "review")
            ),
            ClipEvent.stage == "reviewed",
            ClipEvent.status == "ok",
        )
        .where(*([ClipEvent.clip_id.in_(clip_ids)] if clip_ids is not None else []))
        .subquery()
    )
    review, parent = aliased(AnnotationVersion), aliased(AnnotationVersion)
    return (
        select(
            events.c.clip_id,
            parent.producer,
            func.count(),
            func.sum(parent.n_boxes),
            func.sum(events.c.changed),
        )
        .select_from(events)
        .join(review, and_(review.clip_id == events.c.clip_id, review.version == events.c.version))
        .join(parent, and_(parent.clip_id == review.clip_id, parent.version == review.parent_version))
        .group_by(events.c.clip_id, parent.producer)
    )


def totals_of(rows: Iterable[Any]) -> Totals:
    """Per (clip, model) sums of :func:`review_rows`' rows: every model a producer names gets the
    producer's reviews, as the page always attributed them."""
    sums: dict[tuple[str, str], list[int]] = {}
    for clip_id, producer, n_reviews, n_boxes, n_changed in rows:
        for model_id in (producer or {}).get("models", []):
            entry = sums.setdefault((clip_id, str(model_id)), [0, 0, 0])
            entry[0] += int(n_reviews)
            entry[1] += int(n_changed or 0)
            entry[2] += int(n_boxes or 0)
    return {key: (r, c, p) for key, (r, c, p) in sums.items()}


def by_model(totals: Mapping[tuple[str, str], tuple[int, int, int]]) -> dict[str, tuple[int, int, int]]:
    """Per model sums of per (clip, model) totals."""
    sums: dict[str, tuple[int, int, int]] = {}
    for (_, model_id), (r, c, p) in totals.items():
        old = sums.get(model_id, (0, 0, 0))
        sums[model_id] = (old[0] + r, old[1] + c, old[2] + p)
    return sums


def refresh_review_totals(connection: Connection, clip_ids: Iterable[str]) -> None:
    """Recompute the review totals of ``clip_ids`` after their events or versions were written in the
    transaction of ``connection``; add the difference to each model's totals.

    On PostgreSQL the clips' rows are locked first (in id order), so that two transactions writing
    rows of one clip recompute it one after the other, the later one seeing the earlier one's rows.
    """
    ids = sorted(set(clip_ids))
    if not ids:
        return
    postgres = connection.dialect.name == "postgresql"
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        if postgres:
            connection.execute(
                text("SELECT id FROM clips WHERE id = ANY(:ids) ORDER BY id FOR UPDATE").bindparams(ids=chunk)
            )
        new = totals_of(connection.execute(review_rows(chunk)))
        table = cast(Table, ClipReviewTotal.__table__)
        columns = (table.c.model_id, table.c.reviews, table.c.boxes_changed, table.c.boxes_proposed)
        old: Totals = {
            (clip_id, model_id): (r, c, p)
            for clip_id, model_id, r, c, p in connection.execute(
                select(table.c.clip_id, *columns).where(table.c.clip_id.in_(chunk))
            )
        }
        changed = sorted({key[0] for key in new.keys() | old.keys() if new.get(key) != old.get(key)})
        if not changed:
            continue  # the common case: an autolabel version, or a clip without reviews
        connection.execute(delete(table).where(table.c.clip_id.in_(changed)))
        redo = set(changed)
        rows = [_row(key, value) for key, value in sorted(new.items()) if key[0] in redo]
        if rows:
            connection.execute(insert(table), rows)
        now, before = by_model(new), by_model(old)
        deltas = {m: _minus(now.get(m), before.get(m)) for m in now.keys() | before.keys()}
        add_model_totals(connection, deltas)


def _minus(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> tuple[int, int, int]:
    a, b = a or (0, 0, 0), b or (0, 0, 0)
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _row(key: tuple[str, str], value: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "clip_id": key[0],
        "model_id": key[1],
        "reviews": value[0],
        "boxes_changed": value[1],
        "boxes_proposed": value[2],
    }


def add_model_totals(connection: Connection, deltas: Mapping[str, tuple[int, int, int]]) -> None:
    """Add ``deltas`` to ``model_review_totals`` (one upsert; models in sorted order, so that two
    transactions adding to the same models lock their rows in the same order)."""
    rows = [
        {"model_id": m, "reviews": r, "boxes_changed": c, "boxes_proposed": p}
        for m, (r, c, p) in sorted(deltas.items())
        if (r, c, p) != (0, 0, 0)
    ]
    if not rows:
        return
    table = cast(Table, ModelReviewTotal.__table__)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement: Any = dialect.insert(table).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=["model_id"],
        set_={
            name: table.c[name] + statement.excluded[name]
            for name in ("reviews", "boxes_changed", "boxes_proposed")
        },
    )
    connection.execute(statement)


def recount_review_totals(connection: Connection) -> None:
    """Rebuild both tables from the events and versions (after rows were written past the lineage
    functions, e.g. a benchmark's bulk fill); migration 0006 does the same for an existing database."""
    clip_table = cast(Table, ClipReviewTotal.__table__)
    connection.execute(delete(clip_table))
    connection.execute(delete(cast(Table, ModelReviewTotal.__table__)))
    totals = totals_of(connection.execute(review_rows()))
    rows = [_row(key, value) for key, value in sorted(totals.items())]
    for start in range(0, len(rows), 5000):
        connection.execute(insert(clip_table), rows[start : start + 5000])
    add_model_totals(connection, by_model(totals))


def model_review_totals(connection: Connection) -> dict[str, tuple[int, int, int]]:
    """``model_id -> (reviews, boxes changed, boxes proposed)`` of every model with a counted review."""
    table = cast(Table, ModelReviewTotal.__table__)
    query = select(table.c.model_id, table.c.reviews, table.c.boxes_changed, table.c.boxes_proposed)
    return {m: (int(r), int(c), int(p)) for m, r, c, p in connection.execute(query)}
