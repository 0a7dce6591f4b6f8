"""The review platform interface: what every platform (local, Encord, Label Studio, simulated) provides.

A platform is an adapter to a labelling tool and does I/O only. It receives clips with their pre-labels
(:meth:`ReviewPlatform.export_tasks`), lists the review status of its tasks
(:meth:`ReviewPlatform.review_status`), gives the finished reviews of the open tasks it is handed back as
clip labels (:meth:`ReviewPlatform.completed`, :meth:`ReviewPlatform.to_annotations`) and names its
external ids (:meth:`ReviewPlatform.task_url`). Everything else (which tasks are open, versions, lineage,
stages, diffs) is shared code in :mod:`dataengine.review.importing` and :mod:`dataengine.review.exporting`.
The platforms live in :mod:`dataengine.review.platforms`, whose registry builds them by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from dataengine.errors import AnnotationValidationError, DataEngineError, ReviewError
from dataengine.formats import ClipAnnotations, Frame

#: What :meth:`ReviewPlatform.review_status` says of a task.
TaskStatus = Literal["pending", "completed", "missing"]


class RetryableReviewError(ReviewError):
    """The platform is rate limiting or briefly unreachable; the same call can succeed later."""

    retryable = True


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One clip version to review: its pre-labels and the store URIs of its labelled frames."""

    clip_id: str
    annotations: ClipAnnotations
    frame_uris: dict[int, str]


#: The outcome of exporting one clip: its task id, or the (non-retryable) error that refused it.
ExportOutcome = str | DataEngineError


@dataclass(slots=True)
class CompletedReview:
    """A finished review on a platform that is not imported yet.

    ``payload`` is the platform's raw result (a clip annotation document for ``local``, a label row for
    Encord, a task export for Label Studio); ``source_name`` names where it came from, for error messages.
    ``simulated`` is true when the ``simulated`` platform's reviewer produced it, not a person.
    """

    clip_id: str
    external_id: str
    exported_version: int
    payload: bytes
    source_name: str
    reviewers: list[str] = field(default_factory=list)
    simulated: bool = False
    #: Seconds the reviewers spent on the task, where the platform records it.
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One row of a platform's label export file (an Encord label row, a Label Studio task).

    ``name`` says where it is (``EXPORT.json row 3``). ``clip_id`` is the clip it names; a row that
    cannot be read names none and ``problem`` says why, so one bad row never stops the others.
    """

    index: int
    name: str
    clip_id: str | None
    payload: bytes = b""
    reviewers: list[str] = field(default_factory=list)
    external_id: str = ""
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class OpenTask:
    """A review task that lineage holds as exported and not yet imported."""

    clip_id: str
    exported_version: int
    #: The platform's id of the task (None when the export did not return one).
    external_id: str | None


@runtime_checkable
class ReviewPlatform(Protocol):
    """An annotation platform that people review pre-labels on."""

    name: str

    def export_tasks(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        """Create (or find) the review task of each clip version; the task id (or error) per clip id.

        Idempotent: exporting the same clip and version again returns the same id and creates nothing.
        A transient platform failure raises :class:`RetryableReviewError` for the whole batch.
        """
        ...

    def review_status(self, external_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Where each task stands on the platform: still ``pending``, ``completed`` or ``missing``."""
        ...

    def task_url(self, external_id: str) -> str:
        """Where a person finds the task of ``external_id`` (a URL or URI)."""
        ...

    def completed(self, open_tasks: Sequence[OpenTask]) -> Iterator[CompletedReview]:
        """The finished reviews among ``open_tasks`` (the platform's tasks that lineage holds open)."""
        ...

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The reviewed labels of ``review``, checked against the version that was exported.

        Version, parent, source and producer of the result are set by the importer. Raises
        :class:`~dataengine.errors.AnnotationValidationError` naming ``review.source_name`` and the field.
        """
        ...


def reviewed_version(
    exported: ClipAnnotations, frames: Mapping[int, Frame], *, source_name: str
) -> ClipAnnotations:
    """The review of ``exported`` holding ``frames`` (by frame index): the next version, source
    ``review``, checked with :func:`check_against_export`. Every platform's converter ends here."""
    reviewed = ClipAnnotations(
        clip_id=exported.clip_id,
        version=exported.version + 1,
        parent_version=exported.version,
        source="review",
        classes=list(exported.classes),
        frames=[frames[index] for index in sorted(frames)],
    )
    return check_against_export(reviewed, exported, source_name=source_name)


def check_against_export(
    reviewed: ClipAnnotations, exported: ClipAnnotations, *, source_name: str
) -> ClipAnnotations:
    """Check that ``reviewed`` labels the same clip, frames and classes as ``exported``.

    Returns ``reviewed`` unchanged. Every platform's converter ends with this, so a review can neither
    drop a frame (an empty frame is a labelled negative, a missing one is not) nor invent a class.
    """
    if reviewed.clip_id != exported.clip_id:
        raise AnnotationValidationError(
            source_name, "$.clip_id", f"{reviewed.clip_id!r} is not the exported clip {exported.clip_id!r}"
        )
    expected = {frame.index: frame for frame in exported.frames}
    for i, frame in enumerate(reviewed.frames):
        _check_frame(frame, expected.get(frame.index), f"$.frames[{i}]", source_name)
    missing = sorted(set(expected) - {frame.index for frame in reviewed.frames})
    if missing:
        raise AnnotationValidationError(
            source_name, "$.frames", f"frames {missing} of the exported version are missing"
        )
    classes = set(exported.classes)
    for i, frame in enumerate(reviewed.frames):
        for j, box in enumerate(frame.boxes):
            if box.label not in classes:
                raise AnnotationValidationError(
                    source_name,
                    f"$.frames[{i}].boxes[{j}].label",
                    f"{box.label!r} is not one of the exported classes {sorted(classes)}",
                )
    return reviewed


def _check_frame(frame: Frame, expected: Frame | None, where: str, source_name: str) -> None:
    if expected is None:
        raise AnnotationValidationError(
            source_name, f"{where}.index", f"frame {frame.index} was not exported for review"
        )
    if (frame.width, frame.height) != (expected.width, expected.height):
        raise AnnotationValidationError(
            source_name,
            f"{where}.width",
            f"frame {frame.index} is {frame.width}x{frame.height}, "
            f"the exported frame is {expected.width}x{expected.height}",
        )
