"""Dataset versions and their member clips: immutable once registered. The caller commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.errors import LineageError, NotFoundError
from dataengine.lineage.models import AnnotationVersion, Clip, Dataset, DatasetClip, Video
from dataengine.lineage.upsert import insert_if_absent


@dataclass(frozen=True, slots=True)
class TrainableClip:
    """A clip that can join a dataset, with the annotation version it would join with."""

    clip_id: str
    video_id: str
    version: int
    uri: str
    sha256: str
    camera: str | None


def dataset_id(name: str, version: int) -> str:
    """The id of a dataset version: ``name@version``."""
    return f"{name}@{version}"


def get_dataset(session: Session, name: str, version: int | None = None) -> Dataset:
    """A dataset version, the newest unless ``version`` is given."""
    query = select(Dataset).where(Dataset.name == name)
    if version is not None:
        query = query.where(Dataset.version == version)
    dataset = session.scalars(query.order_by(Dataset.version.desc()).limit(1)).one_or_none()
    if dataset is None:
        wanted = name if version is None else dataset_id(name, version)
        raise NotFoundError(f"no dataset {wanted!r}; build one with `dataengine dataset build`")
    return dataset


def next_dataset_version(session: Session, name: str) -> int:
    """The version number the next snapshot of ``name`` gets."""
    current = session.scalar(select(func.max(Dataset.version)).where(Dataset.name == name))
    return (current or 0) + 1


def create_dataset(
    session: Session,
    *,
    name: str,
    version: int,
    manifest_uri: str,
    manifest_sha256: str,
    counts: dict[str, Any],
    members: Iterable[tuple[str, int, str]],
) -> Dataset:
    """Register a dataset version and its ``(clip_id, annotation_version, split)`` members."""
    ident = dataset_id(name, version)
    created = insert_if_absent(
        session,
        Dataset,
        {
            "id": ident,
            "name": name,
            "version": version,
            "manifest_uri": manifest_uri,
            "manifest_sha256": manifest_sha256,
            "counts": counts,
        },
    )
    if not created:
        raise LineageError(f"dataset {ident} exists already; dataset versions are immutable")
    dataset = session.get(Dataset, ident)
    assert dataset is not None, "inserted just now"
    session.add_all(
        DatasetClip(dataset_id=ident, clip_id=clip_id, annotation_version=ann_version, split=split)
        for clip_id, ann_version, split in members
    )
    session.flush()
    return dataset


def dataset_members(session: Session, dataset_id_: str) -> list[DatasetClip]:
    """The clips of a dataset version, by clip id."""
    query = select(DatasetClip).where(DatasetClip.dataset_id == dataset_id_).order_by(DatasetClip.clip_id)
    return list(session.scalars(query))


def clip_datasets(session: Session, clip_id: str) -> list[DatasetClip]:
    """The dataset versions a clip is in."""
    query = select(DatasetClip).where(DatasetClip.clip_id == clip_id).order_by(DatasetClip.dataset_id)
    return list(session.scalars(query))


def dataset_by_id(session: Session, dataset_id_: str) -> Dataset | None:
    """The dataset version ``name@version``, or None when unknown."""
    return session.get(Dataset, dataset_id_)


def manifest_registered(session: Session, manifest_uri: str) -> bool:
    """Whether a registered dataset version has its manifest at ``manifest_uri``."""
    found = session.scalar(select(Dataset.id).where(Dataset.manifest_uri == manifest_uri).limit(1))
    return found is not None


def trainable_clips(
    session: Session, *, stages: Sequence[str], sources: Sequence[str]
) -> list[TrainableClip]:
    """Clips in one of ``stages`` with their newest annotation version from ``sources``, by clip id."""
    newest = (
        select(AnnotationVersion.clip_id, func.max(AnnotationVersion.version).label("version"))
        .where(AnnotationVersion.source.in_(list(sources)))
        .group_by(AnnotationVersion.clip_id)
        .subquery()
    )
    query = (
        select(
            Clip.id,
            Clip.video_id,
            AnnotationVersion.version,
            AnnotationVersion.uri,
            AnnotationVersion.sha256,
            Video.camera,
        )
        .join(newest, newest.c.clip_id == Clip.id)
        .outerjoin(Video, Video.id == Clip.video_id)
        .join(
            AnnotationVersion,
            (AnnotationVersion.clip_id == Clip.id) & (AnnotationVersion.version == newest.c.version),
        )
        .where(Clip.stage.in_(list(stages)))
        .order_by(Clip.id)
    )
    return [TrainableClip(*row) for row in session.execute(query)]


def earlier_splits(session: Session, names: Iterable[str]) -> list[tuple[str, str | None, str]]:
    """``(video_id, camera, split)`` of every clip in any version of the datasets ``names``.

    Ordered by version, and ``val`` after ``train`` within one version, so a caller that lets later
    rows win keeps the newest split and never trains on a group that was held out.
    """
    query = (
        select(Clip.video_id, Video.camera, DatasetClip.split, Dataset.version)
        .join(DatasetClip, DatasetClip.clip_id == Clip.id)
        .join(Dataset, Dataset.id == DatasetClip.dataset_id)
        .outerjoin(Video, Video.id == Clip.video_id)
        .where(Dataset.name.in_(list(names)))
        .distinct()
        .order_by(Dataset.version, DatasetClip.split)
    )
    return [(video_id, camera, split) for video_id, camera, split, _ in session.execute(query)]
