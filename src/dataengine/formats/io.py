"""Reading and writing clip annotation files in object storage: ``annotations/{clip_id}/v{n:04d}.json``."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from dataengine.errors import AnnotationValidationError, DataEngineError, FormatError, ObjectNotFoundError
from dataengine.formats.annotations import (
    NO_LABELS,
    ClipAnnotations,
    document_bytes,
    sha256_hex,
    validate_document,
)
from dataengine.storage import ObjectStore

_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")


@dataclass(frozen=True, slots=True)
class SavedAnnotation:
    """Where an annotation version was written, and what it holds."""

    clip_id: str
    version: int
    uri: str
    sha256: str
    n_frames: int
    n_boxes: int
    written: bool


def annotation_key(clip_id: str, version: int) -> str:
    """The storage key of one annotation version."""
    return f"annotations/{clip_id}/v{version:04d}.json"


def list_versions(store: ObjectStore, clip_id: str) -> list[int]:
    """The annotation versions stored for ``clip_id``, ascending."""
    versions = []
    for key in store.list(f"annotations/{clip_id}/"):
        match = _VERSION_FILE.match(key.rsplit("/", 1)[-1])
        if match:
            versions.append(int(match.group(1)))
    return sorted(versions)


def next_version(store: ObjectStore, clip_id: str) -> int:
    """The version number a new annotation of ``clip_id`` gets."""
    versions = list_versions(store, clip_id)
    return versions[-1] + 1 if versions else 1


def save_annotations(store: ObjectStore, annotations: ClipAnnotations) -> SavedAnnotation:
    """Validate and write one annotation version; never overwrites another version's file.

    Writing identical bytes again is a no-op (``written=False``); different content under an existing
    version raises :class:`~dataengine.errors.ObjectExistsError`.
    """
    if annotations.source == NO_LABELS:
        raise FormatError(
            f"clip {annotations.clip_id}: the empty pre-labels (source 'none', version 0) are not a label "
            "and are never stored"
        )
    key = annotation_key(annotations.clip_id, annotations.version)
    doc = annotations.to_dict()
    validate_document(doc, source_name=store.uri(key))
    data = document_bytes(doc)  # the bytes of the document just validated (to_json_bytes' bytes)
    written = store.write_bytes(key, data, exclusive=True)
    return SavedAnnotation(
        clip_id=annotations.clip_id,
        version=annotations.version,
        uri=store.uri(key),
        sha256=sha256_hex(data),
        n_frames=len(annotations.frames),
        n_boxes=annotations.n_boxes,
        written=written,
    )


def load_annotations(store: ObjectStore, clip_id: str, version: int | None = None) -> ClipAnnotations:
    """One version of a clip's labels, the latest unless ``version`` is given."""
    if version is None:
        versions = list_versions(store, clip_id)
        if not versions:
            raise ObjectNotFoundError(f"clip {clip_id} has no annotations under {store.uri('annotations')}")
        version = versions[-1]
    key = annotation_key(clip_id, version)
    data = store.read_bytes(key)
    annotations = ClipAnnotations.from_json_bytes(data, source_name=store.uri(key))
    if annotations.clip_id != clip_id or annotations.version != version:
        raise AnnotationValidationError(
            store.uri(key),
            "$.clip_id" if annotations.clip_id != clip_id else "$.version",
            f"the file holds {annotations.clip_id} v{annotations.version}, not {clip_id} v{version}",
        )
    return annotations


def orphan_version(
    store: ObjectStore,
    clip_id: str,
    *,
    registered: Collection[int],
    source: str,
    producer: Mapping[str, Any],
) -> ClipAnnotations | None:
    """A version file of ``clip_id`` from ``source`` with this ``producer`` that lineage does not register
    (``registered``): what a run that died between writing and registering left. None when there is none.
    """
    for version in list_versions(store, clip_id):
        if version in registered:
            continue
        try:
            candidate = load_annotations(store, clip_id, version)
        except DataEngineError:
            continue  # unreadable: not this run's file
        if candidate.source == source and candidate.producer == producer:
            return candidate
    return None


def load_annotations_uri(store: ObjectStore, uri: str) -> ClipAnnotations:
    """The annotation file at ``uri`` inside ``store``, validated."""
    key = store.key_of(uri)
    return ClipAnnotations.from_json_bytes(store.read_bytes(key), source_name=uri)
