"""The ``local`` review platform: a folder in the object store that a person or a tool works through.

``review/local/tasks/{clip_id}/v{n:04d}.json`` is the task of clip version ``n`` (see ``docs/review.md``);
the reviewer writes the reviewed labels, as a clip annotation document, to
``review/local/done/{clip_id}/v{n:04d}.json`` and names themselves in its ``producer.reviewers``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dataengine.errors import AnnotationValidationError, FormatError
from dataengine.formats import ClipAnnotations
from dataengine.review.base import (
    CompletedReview,
    ExportItem,
    ExportOutcome,
    OpenTask,
    TaskStatus,
    check_against_export,
)
from dataengine.storage import ObjectStore

if TYPE_CHECKING:
    from dataengine.context import Context

log = logging.getLogger(__name__)

PLATFORM = "local"
TASK_SCHEMA = "dataengine.review-task/1"
TASKS_PREFIX = "review/local/tasks"
DONE_PREFIX = "review/local/done"
_VERSION_KEY = re.compile(r"^(?P<clip>[^/]+)/v(?P<version>\d{4,})\.json$")


def external_id_for(clip_id: str, version: int) -> str:
    """The task id of a clip version on the local platform: ``{clip_id}/v{version:04d}``."""
    return f"{clip_id}/v{version:04d}"


def task_key(clip_id: str, version: int) -> str:
    """The key of the task file of a clip version."""
    return f"{TASKS_PREFIX}/{external_id_for(clip_id, version)}.json"


def done_key(clip_id: str, version: int) -> str:
    """The key a reviewer writes the reviewed labels of a clip version to."""
    return f"{DONE_PREFIX}/{external_id_for(clip_id, version)}.json"


def task_document(
    store: ObjectStore, *, clip_id: str, annotations: ClipAnnotations, frame_uris: dict[int, str]
) -> dict[str, Any]:
    """The JSON task of a clip version: the pre-labels, the frame images and where the answer goes."""
    version = annotations.version
    return {
        "schema": TASK_SCHEMA,
        "platform": PLATFORM,
        "external_id": external_id_for(clip_id, version),
        "clip_id": clip_id,
        "exported_version": version,
        "frame_uris": {str(index): uri for index, uri in sorted(frame_uris.items())},
        "done_key": done_key(clip_id, version),
        "done_uri": store.uri(done_key(clip_id, version)),
        "annotations": annotations.to_dict(),
    }


def read_task(store: ObjectStore, clip_id: str, version: int) -> dict[str, Any]:
    """The task file of a clip version."""
    key = task_key(clip_id, version)
    doc = store.read_json(key)
    if not isinstance(doc, dict) or doc.get("schema") != TASK_SCHEMA:
        raise FormatError(f"{store.uri(key)}: not a {TASK_SCHEMA} document")
    return doc


def write_done(store: ObjectStore, annotations: ClipAnnotations, *, exported_version: int) -> bool:
    """Write reviewed labels as the done file of a clip version, unless one is there already.

    Returns whether it was written: an existing done file (a person's work) is never replaced.
    """
    key = done_key(annotations.clip_id, exported_version)
    if store.exists(key):
        return False
    return store.write_bytes(key, annotations.to_json_bytes(), exclusive=True)


def to_annotations(payload: bytes, *, source_name: str, exported: ClipAnnotations) -> ClipAnnotations:
    """The labels of a local done file, validated and checked against the exported version.

    Version, parent and source are the importer's to set: a reviewer who edited the task's document of
    empty pre-labels (version 0, ``source: none``) in place has written a review all the same.
    """
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationValidationError(source_name, "$", f"not valid JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc.update(version=exported.version + 1, parent_version=exported.version or None, source="review")
    reviewed = ClipAnnotations.from_dict(doc, source_name=source_name)
    return check_against_export(reviewed, exported, source_name=source_name)


def _producer_of(payload: bytes) -> dict[str, Any]:
    """The ``producer`` of a done file, or ``{}`` if it cannot be read (the import reports why)."""
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    producer = doc.get("producer") if isinstance(doc, dict) else None
    return producer if isinstance(producer, dict) else {}


def _reviewers(producer: dict[str, Any]) -> list[str]:
    reviewers = producer.get("reviewers")
    if not isinstance(reviewers, list):
        return []
    return [str(name) for name in reviewers]


class LocalPlatform:
    """Review tasks as files under ``review/local/`` in the context's object store."""

    name = PLATFORM

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def export_tasks(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        """Write the task file of each clip version; an existing task file is kept as it is."""
        outcomes: dict[str, ExportOutcome] = {}
        for item in items:
            key = task_key(item.clip_id, item.annotations.version)
            if not self.store.exists(key):
                doc = task_document(
                    self.store, clip_id=item.clip_id, annotations=item.annotations, frame_uris=item.frame_uris
                )
                self.store.write_json(key, doc)
            outcomes[item.clip_id] = external_id_for(item.clip_id, item.annotations.version)
        return outcomes

    def review_status(self, external_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """``completed`` when the done file is there, ``pending`` when only the task file is."""
        statuses: dict[str, TaskStatus] = {}
        for external_id in external_ids:
            if self.store.exists(f"{DONE_PREFIX}/{external_id}.json"):
                statuses[external_id] = "completed"
            elif self.store.exists(f"{TASKS_PREFIX}/{external_id}.json"):
                statuses[external_id] = "pending"
            else:
                statuses[external_id] = "missing"
        return statuses

    def task_url(self, external_id: str) -> str:
        """The URI of the task file."""
        return self.store.uri(f"{TASKS_PREFIX}/{external_id}.json")

    def completed(self, open_tasks: Sequence[OpenTask]) -> Iterator[CompletedReview]:
        """The done files of ``open_tasks``, by clip id."""
        wanted = {(task.clip_id, task.exported_version) for task in open_tasks}
        for key in self.store.list(f"{DONE_PREFIX}/", suffix=".json"):
            match = _VERSION_KEY.match(key[len(DONE_PREFIX) + 1 :])
            if match is None:
                log.warning("ignoring %s: not a review/local/done/{clip_id}/v{n:04d}.json file", key)
                continue
            clip_id, version = match.group("clip"), int(match.group("version"))
            if (clip_id, version) in wanted:
                yield self._review(key, clip_id, version)

    def _review(self, key: str, clip_id: str, version: int) -> CompletedReview:
        payload = self.store.read_bytes(key)
        producer = _producer_of(payload)
        return CompletedReview(
            clip_id=clip_id,
            external_id=external_id_for(clip_id, version),
            exported_version=version,
            payload=payload,
            source_name=self.store.uri(key),
            reviewers=_reviewers(producer),
            simulated=producer.get("simulated") is True,
        )

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The labels of a local done file, validated and checked against the exported version."""
        return to_annotations(review.payload, source_name=review.source_name, exported=exported)
