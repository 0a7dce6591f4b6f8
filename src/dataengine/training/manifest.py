"""Dataset snapshots: ``datasets/{name}/v{version:04d}/manifest.jsonl`` plus their lineage rows.

A snapshot lists, for every clip with trusted labels, which annotation version it uses, that file's sha256,
its split and its labelled frames. Training reads this small index and then each clip's own annotation
file, never one big annotation document (docs/training.md explains why).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.context import Context
from dataengine.errors import (
    DataEngineError,
    EmptyDatasetError,
    FormatError,
    NotFoundError,
    ObjectExistsError,
)
from dataengine.formats import TRUSTED_SOURCES, ClipAnnotations, sha256_hex
from dataengine.lineage import repository as repo
from dataengine.lineage.models import AnnotationVersion, Clip, Dataset
from dataengine.storage import ObjectStore

DEFAULT_NAME = "default"
SPLITS = ("train", "val")
#: Clip stages whose labels are final enough to train on.
DATASET_STAGES = ("reviewed", "in_dataset")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One line of a manifest: one clip, its annotation file and its labelled frames."""

    clip_id: str
    video_id: str
    annotation_version: int
    uri: str
    sha256: str
    split: str
    frames: tuple[int, ...]
    width: int
    height: int
    n_boxes: int

    @property
    def n_frames(self) -> int:
        """Number of labelled frames."""
        return len(self.frames)

    def to_json_line(self) -> str:
        """The canonical JSON line: the same entry always gives the same bytes."""
        doc = {
            "clip_id": self.clip_id,
            "video_id": self.video_id,
            "annotation_version": self.annotation_version,
            "uri": self.uri,
            "sha256": self.sha256,
            "split": self.split,
            "n_frames": self.n_frames,
            "frames": list(self.frames),
            "width": self.width,
            "height": self.height,
            "n_boxes": self.n_boxes,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, doc: Any, *, source_name: str) -> ManifestEntry:
        """Parse one manifest line; a missing or mistyped field is a :class:`FormatError`."""
        try:
            entry = cls(
                clip_id=str(doc["clip_id"]),
                video_id=str(doc.get("video_id", doc["clip_id"].split("-")[0])),
                annotation_version=int(doc["annotation_version"]),
                uri=str(doc["uri"]),
                sha256=str(doc["sha256"]),
                split=str(doc["split"]),
                frames=tuple(int(f) for f in doc["frames"]),
                width=int(doc["width"]),
                height=int(doc["height"]),
                n_boxes=int(doc.get("n_boxes", 0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"{source_name}: not a manifest entry ({type(exc).__name__}: {exc})") from exc
        if entry.split not in SPLITS:
            raise FormatError(f"{source_name}: split {entry.split!r} is not one of {SPLITS}")
        return entry


@dataclass
class DatasetRef:
    """A dataset version. ``n_train``/``n_val`` count clips; ``n_frames`` counts labelled frames."""

    dataset_id: str
    name: str
    version: int
    manifest_uri: str
    n_clips: int
    n_train: int
    n_val: int
    n_frames: int
    n_boxes: int
    created: bool


def manifest_key(name: str, version: int) -> str:
    """The storage key of a dataset version's manifest."""
    return f"datasets/{name}/v{version:04d}/manifest.jsonl"


def parse_manifest(data: bytes, *, source_name: str) -> list[ManifestEntry]:
    """Every entry of a manifest file."""
    entries = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{source_name} line {number}: not JSON: {exc}") from exc
        entries.append(ManifestEntry.from_dict(doc, source_name=f"{source_name} line {number}"))
    return entries


def read_manifest(store: ObjectStore, manifest: str) -> list[ManifestEntry]:
    """The entries of the manifest at ``manifest``, a key or a URI inside ``store``."""
    key = store.key_of(manifest) if "://" in manifest else manifest
    return parse_manifest(store.read_bytes(key), source_name=store.uri(key))


def split_of_video(video_id: str) -> float:
    """A video's fixed position in [0, 1): the split depends on it alone, never on the run."""
    digest = hashlib.sha256(f"dataengine-split:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(video_ids: Iterable[str], *, val_fraction: float) -> dict[str, str]:
    """``train`` or ``val`` per video, by hash; with two or more videos each split gets at least one."""
    ranked = sorted(set(video_ids), key=split_of_video)
    splits = {v: "val" if split_of_video(v) < val_fraction else "train" for v in ranked}
    if len(ranked) >= 2 and val_fraction > 0:
        # A tiny dataset may hash every video to one side; move the video nearest the boundary.
        if "val" not in splits.values():
            splits[ranked[0]] = "val"
        if "train" not in splits.values():
            splits[ranked[-1]] = "train"
    return splits


def parse_dataset_spec(spec: str | None) -> tuple[str, int | None]:
    """``NAME@VERSION``, ``NAME`` (the newest version) or None (the newest ``default``)."""
    if spec is None or not spec.strip():
        return DEFAULT_NAME, None
    name, sep, version = spec.strip().partition("@")
    if not sep:
        return name, None
    if not name or not version.isdigit():
        raise NotFoundError(f"dataset {spec!r} is not NAME or NAME@VERSION (e.g. default@3)")
    return name, int(version)


def resolve_dataset(session: Session, spec: str | None) -> Dataset:
    """The dataset row named by ``spec`` (see :func:`parse_dataset_spec`)."""
    name, version = parse_dataset_spec(spec)
    return repo.get_dataset(session, name, version)


def dataset_ref(row: Dataset, *, created: bool) -> DatasetRef:
    """The :class:`DatasetRef` of a dataset row."""
    counts = row.counts or {}
    return DatasetRef(
        dataset_id=row.id,
        name=row.name,
        version=row.version,
        manifest_uri=row.manifest_uri,
        n_clips=int(counts.get("n_clips", 0)),
        n_train=int(counts.get("n_train", 0)),
        n_val=int(counts.get("n_val", 0)),
        n_frames=int(counts.get("n_frames", 0)),
        n_boxes=int(counts.get("n_boxes", 0)),
        created=created,
    )


def dataset_classes(row: Dataset, default: Sequence[str]) -> list[str]:
    """The class names a dataset version was built with."""
    classes = (row.counts or {}).get("classes")
    return list(classes) if classes else list(default)


# Building -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    clip_id: str
    video_id: str
    version: int
    uri: str
    sha256: str


def _candidates(session: Session) -> list[_Candidate]:
    """Clips in a dataset stage with their newest trusted annotation version, by clip id."""
    newest = (
        select(AnnotationVersion.clip_id, func.max(AnnotationVersion.version).label("version"))
        .where(AnnotationVersion.source.in_(list(TRUSTED_SOURCES)))
        .group_by(AnnotationVersion.clip_id)
        .subquery()
    )
    query = (
        select(
            Clip.id, Clip.video_id, AnnotationVersion.version, AnnotationVersion.uri, AnnotationVersion.sha256
        )
        .join(newest, newest.c.clip_id == Clip.id)
        .join(
            AnnotationVersion,
            (AnnotationVersion.clip_id == Clip.id) & (AnnotationVersion.version == newest.c.version),
        )
        .where(Clip.stage.in_(DATASET_STAGES))
        .order_by(Clip.id)
    )
    return [_Candidate(*row) for row in session.execute(query)]


def _entry(store: ObjectStore, item: _Candidate, split: str, classes: Sequence[str]) -> ManifestEntry:
    """The manifest entry of one clip, after checking its annotation file against the lineage row."""
    data = store.read_bytes(store.key_of(item.uri))
    digest = sha256_hex(data)
    if digest != item.sha256:
        raise FormatError(
            f"{item.uri}: sha256 {digest[:12]}… differs from the lineage record {item.sha256[:12]}…; "
            "annotation files are immutable, so this file was changed or corrupted"
        )
    annotations = ClipAnnotations.from_json_bytes(data, source_name=item.uri)
    unknown = sorted({b.label for f in annotations.frames for b in f.boxes} - set(classes))
    if unknown:
        raise FormatError(
            f"{item.uri}: labels {unknown} are not among the configured classes {list(classes)}"
        )
    frames = sorted(annotations.frames, key=lambda f: f.index)
    return ManifestEntry(
        clip_id=item.clip_id,
        video_id=item.video_id,
        annotation_version=item.version,
        uri=item.uri,
        sha256=digest,
        split=split,
        frames=tuple(f.index for f in frames),
        width=frames[0].width if frames else 0,
        height=frames[0].height if frames else 0,
        n_boxes=annotations.n_boxes,
    )


def _counts(entries: Sequence[ManifestEntry], classes: Sequence[str]) -> dict[str, Any]:
    def count(split: str | None, what: str) -> int:
        chosen = [e for e in entries if split is None or e.split == split]
        if what == "clips":
            return len(chosen)
        return sum(e.n_frames if what == "frames" else e.n_boxes for e in chosen)

    return {
        "n_clips": count(None, "clips"),
        "n_train": count("train", "clips"),
        "n_val": count("val", "clips"),
        "n_frames": count(None, "frames"),
        "n_train_frames": count("train", "frames"),
        "n_val_frames": count("val", "frames"),
        "n_boxes": count(None, "boxes"),
        "n_videos": len({e.video_id for e in entries}),
        "n_val_videos": len({e.video_id for e in entries if e.split == "val"}),
        "classes": list(classes),
    }


def _latest_if_same(session: Session, name: str, members: set[tuple[str, int]]) -> Dataset | None:
    """The newest version of ``name`` when its members are exactly ``members``."""
    try:
        latest = repo.get_dataset(session, name)
    except NotFoundError:
        return None
    current = {(m.clip_id, m.annotation_version) for m in repo.dataset_members(session, latest.id)}
    return latest if current == members else None


def _write_manifest(session: Session, store: ObjectStore, key: str, data: bytes) -> None:
    """Write a new manifest; a leftover from a run that died before registering it is replaced."""
    try:
        store.write_bytes(key, data, exclusive=True)
    except ObjectExistsError:
        if session.scalar(select(Dataset.id).where(Dataset.manifest_uri == store.uri(key))):
            raise
        store.write_bytes(key, data)


def _collect_entries(
    ctx: Context, candidates: Sequence[_Candidate]
) -> tuple[list[ManifestEntry], list[tuple[_Candidate, str]]]:
    splits = assign_splits((c.video_id for c in candidates), val_fraction=ctx.settings.val_fraction)
    entries: list[ManifestEntry] = []
    refused: list[tuple[_Candidate, str]] = []
    for item in candidates:
        try:
            entries.append(_entry(ctx.store, item, splits[item.video_id], ctx.settings.classes))
        except DataEngineError as exc:
            refused.append((item, str(exc)))
    return entries, refused


def _quarantine(session: Session, ctx: Context, refused: Sequence[tuple[_Candidate, str]]) -> None:
    for item, reason in refused:
        repo.quarantine(
            session,
            kind="annotation",
            input=item.uri,
            reason=reason,
            stage="in_dataset",
            video_id=item.video_id,
            clip_id=item.clip_id,
            run_id=ctx.run_id,
        )


def _register(
    session: Session, ctx: Context, name: str, version: int, entries: Sequence[ManifestEntry], sha: str
) -> Dataset:
    row = repo.create_dataset(
        session,
        name=name,
        version=version,
        manifest_uri=ctx.store.uri(manifest_key(name, version)),
        manifest_sha256=sha,
        counts=_counts(entries, ctx.settings.classes),
        members=[(e.clip_id, e.annotation_version, e.split) for e in entries],
    )
    for entry in entries:
        details = {"dataset_id": row.id, "annotation_version": entry.annotation_version, "split": entry.split}
        if repo.get_clip(session, entry.clip_id).stage == "in_dataset":
            # Already in an older snapshot: the history still records every dataset the clip joins.
            repo.record_event(
                session,
                entry.clip_id,
                "in_dataset",
                status="ok",
                run_id=ctx.run_id,
                actor=ctx.actor,
                details=details,
            )
        else:
            repo.set_stage(
                session, entry.clip_id, "in_dataset", run_id=ctx.run_id, actor=ctx.actor, details=details
            )
    return row


def build_dataset(ctx: Context, *, name: str = DEFAULT_NAME) -> DatasetRef:
    """Snapshot every reviewed clip with trusted labels as a new version of dataset ``name``.

    Returns the newest existing version unchanged (``created=False``) when its members are the same
    (clip, annotation version) pairs. Clips whose annotation file is unreadable are quarantined.
    """
    with ctx.db.session() as session:
        candidates = _candidates(session)
        same = _latest_if_same(session, name, {(c.clip_id, c.version) for c in candidates})
        if candidates and same is not None:
            return dataset_ref(same, created=False)
    if not candidates:
        raise EmptyDatasetError(
            "nothing reviewed yet: no clip in stage reviewed or in_dataset has a trusted annotation "
            f"(source in {list(TRUSTED_SOURCES)}); review some clips, then build the dataset"
        )
    entries, refused = _collect_entries(ctx, candidates)
    with ctx.db.session() as session:
        _quarantine(session, ctx, refused)
        same = _latest_if_same(session, name, {(e.clip_id, e.annotation_version) for e in entries})
        if entries and same is not None:
            return dataset_ref(same, created=False)
    if not entries:
        raise EmptyDatasetError(f"every candidate clip of dataset {name!r} was quarantined: {refused[0][1]}")
    with ctx.db.session() as session:
        version = repo.next_dataset_version(session, name)
        data = "".join(e.to_json_line() + "\n" for e in entries).encode("utf-8")
        _write_manifest(session, ctx.store, manifest_key(name, version), data)
        row = _register(session, ctx, name, version, entries, sha256_hex(data))
        return dataset_ref(row, created=True)
