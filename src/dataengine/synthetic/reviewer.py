"""The ``simulated`` review platform: a SIMULATION of a human reviewer, for the demo and tests only.

No person looks at anything here. Exporting a clip version to ``simulated`` creates its task; the
simulated reviewer "finishes" every open task at once with the synthetic video's ground truth, mapped
onto the clip's sampled frames and signed ``simulated-reviewer`` with ``"simulated": true``. The import
treats it like any other review, and the resulting annotation version keeps ``"simulated": true``. It
only works on videos rendered by :mod:`dataengine.synthetic`, which have a ground-truth sidecar.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from dataengine.clips import ClipMeta, read_meta
from dataengine.errors import DataEngineError, ObjectNotFoundError, ReviewError
from dataengine.formats import Box, ClipAnnotations, Frame, load_annotations
from dataengine.review.base import CompletedReview, check_against_export
from dataengine.review.empty import EMPTY_VERSION, empty_labels
from dataengine.storage import ObjectStore
from dataengine.synthetic.video import load_ground_truth as load_sidecar

if TYPE_CHECKING:
    from dataengine.context import Context
    from dataengine.review.base import ExportItem, ExportOutcome, OpenTask, TaskStatus

PLATFORM = "simulated"
#: The reviewer name the simulation signs with; never the name of a person.
SIMULATED_REVIEWER = "simulated-reviewer"


def external_id_for(clip_id: str, version: int) -> str:
    """The task id of a clip version on the simulated platform: ``{clip_id}/v{version:04d}``."""
    return f"{clip_id}/v{version:04d}"


class SimulatedPlatform:
    """Review by a SIMULATED reviewer who answers every task with the synthetic ground truth."""

    name = PLATFORM

    def __init__(self, ctx: Context) -> None:
        self.store = ctx.store
        self.classes = list(ctx.settings.classes)

    def export_tasks(self, items: Sequence[ExportItem]) -> dict[str, ExportOutcome]:
        """The task id of each clip version; a clip with no synthetic ground truth is refused."""
        outcomes: dict[str, ExportOutcome] = {}
        for item in items:
            try:
                ground_truth(self.store, read_meta(self.store, item.clip_id))
            except DataEngineError as exc:
                outcomes[item.clip_id] = exc
            else:
                outcomes[item.clip_id] = external_id_for(item.clip_id, item.annotations.version)
        return outcomes

    def review_status(self, external_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """Every task is ``completed``: the simulated reviewer answers at once."""
        return dict.fromkeys(external_ids, "completed")

    def task_url(self, external_id: str) -> str:
        """A name for the task (there is nothing to open: no person reviews here)."""
        return f"simulated://{external_id}"

    def completed(self, open_tasks: Sequence[OpenTask]) -> Iterator[CompletedReview]:
        """The ground-truth review of every open task, by clip id."""
        for task in sorted(open_tasks, key=lambda t: (t.clip_id, t.exported_version)):
            exported = (
                empty_labels(self.store, task.clip_id, classes=self.classes)
                if task.exported_version == EMPTY_VERSION
                else load_annotations(self.store, task.clip_id, task.exported_version)
            )
            labels = simulated_labels(self.store, exported)
            yield CompletedReview(
                clip_id=task.clip_id,
                external_id=task.external_id or external_id_for(task.clip_id, task.exported_version),
                exported_version=task.exported_version,
                payload=labels.to_json_bytes(),
                source_name=f"simulated review of clip {task.clip_id} v{task.exported_version}",
                reviewers=[SIMULATED_REVIEWER],
                simulated=True,
            )

    def to_annotations(self, review: CompletedReview, *, exported: ClipAnnotations) -> ClipAnnotations:
        """The simulated labels, validated and checked against the exported version."""
        reviewed = ClipAnnotations.from_json_bytes(review.payload, source_name=review.source_name)
        return check_against_export(reviewed, exported, source_name=review.source_name)


def ground_truth(store: ObjectStore, meta: ClipMeta) -> ClipAnnotations:
    """The ground truth of the clip's source video; a :class:`ReviewError` naming the sidecar if absent."""
    try:
        return load_sidecar(store, meta.source_uri)
    except ObjectNotFoundError as exc:
        raise ReviewError(
            f"clip {meta.clip_id}: the simulated review needs synthetic ground truth: {exc}"
        ) from exc


def simulated_labels(store: ObjectStore, exported: ClipAnnotations) -> ClipAnnotations:
    """The labels the SIMULATED reviewer gives an exported clip version: its ground truth."""
    meta = read_meta(store, exported.clip_id)
    return ground_truth_review(ground_truth(store, meta), exported, start_frame=meta.start_frame)


def ground_truth_review(
    truth: ClipAnnotations, exported: ClipAnnotations, *, start_frame: int
) -> ClipAnnotations:
    """Map source-video ground truth onto the exported clip's frames, as a simulated review document.

    Clip frame ``i`` is ground-truth frame ``start_frame + i``; boxes are scaled to the sampled frame's
    size, keep their ground-truth track ids and become ``origin="human"`` with no score. The same
    inputs give the same document, byte for byte.
    """
    classes = set(exported.classes)
    frames = []
    for frame in sorted(exported.frames, key=lambda f: f.index):
        source = truth.frame(start_frame + frame.index)
        if source is None:
            raise ReviewError(
                f"clip {exported.clip_id} frame {frame.index}: the ground truth of {truth.clip_id} "
                f"has no frame {start_frame + frame.index}"
            )
        for box in source.boxes:
            if box.label not in classes:
                raise ReviewError(
                    f"clip {exported.clip_id}: ground-truth label {box.label!r} is not one of the "
                    f"clip's classes {sorted(classes)}"
                )
        frames.append(_scaled_frame(source, frame))
    return ClipAnnotations(
        clip_id=exported.clip_id,
        version=exported.version + 1,
        parent_version=exported.version,
        source="review",
        producer={"reviewers": [SIMULATED_REVIEWER], "simulated": True, "ground_truth": truth.clip_id},
        classes=list(exported.classes),
        frames=frames,
        # The ground truth's time, not now: a review is the same document each time it is fetched, as
        # a platform's export of one submitted annotation is, so a rerun after a killed import finds
        # the version file that run wrote (its producer names the payload's sha256) instead of a new one.
        created_at=truth.created_at,
    )


def _scaled_frame(source: Frame, target: Frame) -> Frame:
    """``source``'s boxes in ``target``'s pixels, clipped to it; boxes that vanish are dropped."""
    scale_x = target.width / source.width
    scale_y = target.height / source.height
    boxes = []
    for box in source.boxes:
        x1, y1, x2, y2 = box.xyxy
        xyxy = (
            min(max(x1 * scale_x, 0.0), float(target.width)),
            min(max(y1 * scale_y, 0.0), float(target.height)),
            min(max(x2 * scale_x, 0.0), float(target.width)),
            min(max(y2 * scale_y, 0.0), float(target.height)),
        )
        if xyxy[0] < xyxy[2] and xyxy[1] < xyxy[3]:
            boxes.append(Box(label=box.label, xyxy=xyxy, track=box.track, score=None, origin="human"))
    return Frame(
        index=target.index, image=target.image, width=target.width, height=target.height, boxes=boxes
    )
