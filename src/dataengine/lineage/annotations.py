"""The annotation versions of clips: immutable files, registered once each. The caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError
from dataengine.formats import SavedAnnotation
from dataengine.lineage.models import AnnotationVersion
from dataengine.lineage.review_totals import refresh_review_totals
from dataengine.lineage.upsert import insert_if_absent


def record_annotation(
    session: Session,
    *,
    clip_id: str,
    version: int,
    uri: str,
    sha256: str,
    source: str,
    parent_version: int | None,
    producer: dict[str, Any],
    n_frames: int,
    n_boxes: int,
) -> tuple[AnnotationVersion, bool]:
    """Register an annotation file; returns ``(row, created)``. Same version, other bytes: an error."""
    created = insert_if_absent(
        session,
        AnnotationVersion,
        {
            "clip_id": clip_id,
            "version": version,
            "uri": uri,
            "sha256": sha256,
            "source": source,
            "parent_version": parent_version,
            "producer": producer,
            "n_frames": n_frames,
            "n_boxes": n_boxes,
        },
    )
    row = session.scalars(
        select(AnnotationVersion).where(
            AnnotationVersion.clip_id == clip_id, AnnotationVersion.version == version
        )
    ).one()
    if row.sha256 != sha256:
        raise LineageError(
            f"annotation {clip_id} v{version} is registered with sha256 {row.sha256}, not {sha256}; "
            "annotation versions are immutable"
        )
    if created:
        # A new version can make a review of the clip count (or be the review): the models page's totals.
        refresh_review_totals(session.connection(), [clip_id])
    return row, created


def record_saved(
    session: Session,
    saved: SavedAnnotation,
    *,
    source: str,
    parent_version: int | None,
    producer: dict[str, Any],
) -> tuple[AnnotationVersion, bool]:
    """:func:`record_annotation` of a file :func:`~dataengine.formats.save_annotations` just wrote."""
    return record_annotation(
        session,
        clip_id=saved.clip_id,
        version=saved.version,
        uri=saved.uri,
        sha256=saved.sha256,
        source=source,
        parent_version=parent_version,
        producer=producer,
        n_frames=saved.n_frames,
        n_boxes=saved.n_boxes,
    )


def annotation_versions(session: Session, clip_id: str) -> list[AnnotationVersion]:
    """A clip's annotation versions, oldest first."""
    query = (
        select(AnnotationVersion)
        .where(AnnotationVersion.clip_id == clip_id)
        .order_by(AnnotationVersion.version)
    )
    return list(session.scalars(query))


def latest_annotation(
    session: Session, clip_id: str, *, sources: Sequence[str] | None = None
) -> AnnotationVersion | None:
    """The newest annotation version of a clip, optionally only from ``sources``."""
    query = select(AnnotationVersion).where(AnnotationVersion.clip_id == clip_id)
    if sources is not None:
        query = query.where(AnnotationVersion.source.in_(list(sources)))
    return session.scalars(query.order_by(AnnotationVersion.version.desc()).limit(1)).one_or_none()
