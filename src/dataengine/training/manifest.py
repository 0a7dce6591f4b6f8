"""Dataset manifests: ``datasets/{name}/v{version:04d}/manifest.jsonl``, their entries and the split rule.

A manifest lists, for every clip with trusted labels, which annotation version it uses, that file's sha256,
its split and its labelled frames. Training reads this small index and then each clip's own annotation
file, never one big annotation document (docs/training.md explains why). Building one is ``snapshot``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataengine.errors import FormatError, NotFoundError
from dataengine.lineage import Dataset, Session
from dataengine.lineage.datasets import get_dataset
from dataengine.storage import ObjectStore

DEFAULT_NAME = "default"
SPLITS = ("train", "val")
#: The held-out evaluation set of dataset ``NAME`` is the dataset ``NAME-heldout``.
HELDOUT_SUFFIX = "-heldout"
#: The edge-case evaluation set of dataset ``NAME`` (val clips that came in through a trigger) is
#: the dataset ``NAME-edgecases``.
EDGE_CASES_SUFFIX = "-edgecases"


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
    #: The fixed held-out evaluation set this version is scored on (``NAME-heldout@N``), if any.
    heldout_id: str | None = None
    #: The growing edge-case evaluation set this version is scored on (``NAME-edgecases@N``), if any.
    edge_cases_id: str | None = None
    #: What changed against the previous version: ``previous``, ``added``, ``removed``, ``relabelled``.
    diff: dict[str, Any] = field(default_factory=dict)


def heldout_name(name: str) -> str:
    """The dataset name of ``name``'s fixed held-out evaluation set."""
    return f"{name}{HELDOUT_SUFFIX}"


def edge_cases_name(name: str) -> str:
    """The dataset name of ``name``'s edge-case evaluation set."""
    return f"{name}{EDGE_CASES_SUFFIX}"


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


def assign_splits(
    video_ids: Iterable[str],
    *,
    val_fraction: float,
    fixed: Mapping[str, str] | None = None,
    classes_of: Mapping[str, Iterable[str]] | None = None,
    min_class_videos: int = 3,
) -> dict[str, str]:
    """``train`` or ``val`` per video (or camera: any group a split keeps together).

    A video in ``fixed`` (its split in an earlier version) keeps it, so no video ever moves between
    splits. A new video goes by hash. When every video would sit on one side, the new video nearest the
    boundary is moved across, so a dataset of two or more videos has both splits whenever a new video
    can be moved without breaking an earlier assignment.

    Stratified by class: ``classes_of`` gives the classes each video shows. A class found in at least
    ``min_class_videos`` videos gets one of them in val (and keeps one in train), so a rare class is not
    all in train by chance: the new video of that class nearest the boundary is moved across. Rarer
    classes are placed first, so a move for a common class does not undo one for a rare class.
    """
    fixed = fixed or {}
    ranked = sorted(set(video_ids), key=split_of_video)
    splits = {v: fixed.get(v) or ("val" if split_of_video(v) < val_fraction else "train") for v in ranked}
    movable = [v for v in ranked if v not in fixed]
    if len(ranked) >= 2 and val_fraction > 0 and movable:
        if "val" not in splits.values():
            splits[movable[0]] = "val"
        elif "train" not in splits.values():
            splits[movable[-1]] = "train"
    if classes_of and val_fraction > 0:
        _stratify(splits, movable, classes_of, min_class_videos)
    return splits


def _stratify(
    splits: dict[str, str],
    movable: Sequence[str],
    classes_of: Mapping[str, Iterable[str]],
    min_class_videos: int,
) -> None:
    """Move new videos (``movable``, ranked by hash) so each class with enough videos is on both sides."""
    videos_of: dict[str, list[str]] = {}
    for video in splits:
        for name in set(classes_of.get(video, ())):
            videos_of.setdefault(name, []).append(video)
    placed: set[str] = set()  # videos moved for a rarer class stay where that class needs them
    for _name, videos in sorted(videos_of.items(), key=lambda item: (len(item[1]), item[0])):
        if len(videos) < min_class_videos:
            continue
        sides = {splits[v] for v in videos}
        for side, pick in (("val", 0), ("train", -1)):
            if side in sides:
                continue
            # With at least min_class_videos (>= 2) videos all on the other side, one can cross.
            candidates = [v for v in movable if v in videos and v not in placed]
            if candidates:
                chosen = candidates[pick]
                splits[chosen] = side
                placed.add(chosen)
                sides = {splits[v] for v in videos}


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
    return get_dataset(session, name, version)


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
        heldout_id=counts.get("heldout"),
        edge_cases_id=counts.get("edge_cases"),
        diff=dict(counts.get("diff") or {}),
    )


def dataset_classes(row: Dataset, default: Sequence[str]) -> list[str]:
    """The class names a dataset version was built with."""
    classes = (row.counts or {}).get("classes")
    return list(classes) if classes else list(default)
