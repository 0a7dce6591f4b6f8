"""A SIMULATION of a human reviewer, for the demo and tests only: no person looks at anything here.

For every open task on the ``local`` platform, the simulated reviewer writes the synthetic video's
ground truth, mapped onto the clip's sampled frames, as the done file, and signs it
``simulated-reviewer`` with ``"simulated": true`` in its producer. The import then treats it like any
other review, and the resulting annotation version keeps ``"simulated": true``. It only works on videos
rendered by :mod:`dataengine.synthetic`, which have a ground-truth sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataengine.clips import ClipMeta, read_meta
from dataengine.context import Context
from dataengine.errors import ObjectNotFoundError, ReviewError
from dataengine.formats import Box, ClipAnnotations, Frame, load_annotations
from dataengine.lineage.reviews import review_tasks
from dataengine.review import local
from dataengine.review.diff import box_changes
from dataengine.storage import ObjectStore

#: The reviewer name the simulation signs with; never the name of a person.
SIMULATED_REVIEWER = "simulated-reviewer"


@dataclass
class SimulationReport:
    """What the SIMULATED reviewer did: the clips it labelled and the boxes it changed."""

    reviewed: list[str]
    boxes_changed: int
    changes: dict[str, int]
    #: Open tasks left alone because a done file (perhaps a person's) is there already.
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form."""
        return {
            "simulated": True,
            "reviewed": list(self.reviewed),
            "boxes_changed": self.boxes_changed,
            "changes": dict(self.changes),
            "kept": list(self.kept),
        }

    def summary(self) -> str:
        """One short human line that says this was a simulation."""
        return (
            f"SIMULATED review (not a person): labelled {len(self.reviewed)} clip(s) from synthetic "
            f"ground truth, {self.boxes_changed} box(es) changed; kept {len(self.kept)} existing done file(s)"
        )


def simulate_review(ctx: Context, *, platform: str | None = None) -> SimulationReport:
    """SIMULATE a human reviewer on every open ``local`` task, from the synthetic ground truth.

    For the demo and tests only. Writes done files, never replaces one, and imports nothing: run
    :func:`~dataengine.review.import_reviews` afterwards (or with ``simulate=True``).
    Raises :class:`ReviewError` naming the sidecar when a clip's video has no ground truth.
    """
    chosen = platform or ctx.settings.review_platform
    if chosen != local.PLATFORM:
        raise ReviewError(
            f"the simulated review writes done files of the local platform; it cannot review on {chosen!r}"
        )
    with ctx.db.session() as session:
        tasks = [
            (task.clip_id, task.exported_version)
            for task in review_tasks(session, platform=local.PLATFORM, status="exported")
        ]
    report = SimulationReport(reviewed=[], boxes_changed=0, changes={})
    for clip_id, exported_version in tasks:
        if ctx.store.exists(local.done_key(clip_id, exported_version)):
            report.kept.append(clip_id)
            continue
        exported = load_annotations(ctx.store, clip_id, exported_version)
        labels = simulated_labels(ctx.store, exported)
        local.write_done(ctx.store, labels, exported_version=exported_version)
        changed = box_changes(exported, labels).total
        report.reviewed.append(clip_id)
        report.changes[clip_id] = changed
        report.boxes_changed += changed
    return report


def load_ground_truth(store: ObjectStore, meta: ClipMeta) -> ClipAnnotations:
    """The ground truth of the clip's source video; a :class:`ReviewError` naming the sidecar if absent."""
    # Imported here: synthetic rendering pulls in the video codec, which review otherwise never needs.
    from dataengine.synthetic import load_ground_truth as load_sidecar

    try:
        return load_sidecar(store, meta.source_uri)
    except ObjectNotFoundError as exc:
        raise ReviewError(
            f"clip {meta.clip_id}: the simulated review needs synthetic ground truth: {exc}"
        ) from exc


def simulated_labels(store: ObjectStore, exported: ClipAnnotations) -> ClipAnnotations:
    """The labels the SIMULATED reviewer gives an exported clip version: its ground truth."""
    meta = read_meta(store, exported.clip_id)
    truth = load_ground_truth(store, meta)
    return ground_truth_review(truth, exported, start_frame=meta.start_frame)


def ground_truth_review(
    truth: ClipAnnotations, exported: ClipAnnotations, *, start_frame: int
) -> ClipAnnotations:
    """Map source-video ground truth onto the exported clip's frames, as a simulated review document.

    Clip frame ``i`` is ground-truth frame ``start_frame + i``; boxes are scaled to the sampled frame's
    size, keep their ground-truth track ids and become ``origin="human"`` with no score.
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
