"""The review platform interface: what every platform (local, Encord, Label Studio) must provide.

A platform receives pre-labels (:meth:`ReviewPlatform.export_task`), tells which reviews are finished
(:meth:`ReviewPlatform.completed`) and turns a finished review's payload back into clip labels
(:meth:`ReviewPlatform.to_annotations`). Everything else (versions, lineage, stages, diffs) is shared
code in :mod:`dataengine.review.importing` and :mod:`dataengine.review.exporting`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dataengine.errors import AnnotationValidationError, ReviewError
from dataengine.formats import ClipAnnotations, Frame

if TYPE_CHECKING:
    from dataengine.context import Context

#: Platforms named in the settings that have no implementation yet.
PLANNED_PLATFORMS = ("encord", "labelstudio")


@dataclass(slots=True)
class CompletedReview:
    """A finished review on a platform that is not imported yet.

    ``payload`` is the platform's raw result (a clip annotation document for ``local``, a label row for
    Encord, a task export for Label Studio); ``source_name`` names where it came from, for error messages.
    ``simulated`` is true when :func:`dataengine.review.simulate_review` wrote it, not a person.
    """

    clip_id: str
    external_id: str
    exported_version: int
    payload: bytes
    source_name: str
    reviewers: list[str] = field(default_factory=list)
    simulated: bool = False


@runtime_checkable
class ReviewPlatform(Protocol):
    """An annotation platform that people review pre-labels on."""

    name: str

    def export_task(self, *, clip_id: str, annotations: ClipAnnotations, frame_uris: dict[int, str]) -> str:
        """Create (or find) the review task of one clip version; returns the platform's task id.

        Idempotent: exporting the same clip and version again returns the same id and creates nothing.
        ``frame_uris`` maps each labelled clip frame index to its image URI in the object store.
        """
        ...

    def completed(self) -> Iterator[CompletedReview]:
        """The reviews that are finished on the platform and whose task is still open in lineage."""
        ...

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The reviewed labels of ``review``, checked against the version that was exported.

        Version, parent, source and producer of the result are set by the importer. Raises
        :class:`~dataengine.errors.AnnotationValidationError` naming ``review.source_name`` and the field.
        """
        ...


PlatformFactory = Callable[["Context"], ReviewPlatform]


def _local_factory(ctx: Context) -> ReviewPlatform:
    from dataengine.review.local import LocalPlatform

    return LocalPlatform(ctx)


#: Implemented platforms by name. Later platforms register here.
PLATFORMS: dict[str, PlatformFactory] = {"local": _local_factory}


def get_platform(ctx: Context, name: str | None = None) -> ReviewPlatform:
    """The review platform ``name`` (default: ``ctx.settings.review_platform``) bound to ``ctx``."""
    chosen = name or ctx.settings.review_platform
    factory = PLATFORMS.get(chosen)
    if factory is not None:
        return factory(ctx)
    if chosen in PLANNED_PLATFORMS:
        raise ReviewError(
            f"review platform {chosen!r} is not implemented yet; use one of {sorted(PLATFORMS)} "
            "(set DATAENGINE_REVIEW_PLATFORM or pass --platform)"
        )
    raise ReviewError(f"unknown review platform {chosen!r}; known platforms are {sorted(PLATFORMS)}")


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
