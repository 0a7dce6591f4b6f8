"""``autolabel``: label selected clips with the promoted detector and write a new annotation version."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from dataengine import clips, formats
from dataengine.autolabel.labelling import FrameSize, count_tracks, label_frames
from dataengine.autolabel.tracking import IoUTracker
from dataengine.context import Context
from dataengine.errors import FormatError, InputRejectedError, ModelError, NotFoundError, StorageError
from dataengine.formats import ClipAnnotations, SavedAnnotation
from dataengine.lineage import repository
from dataengine.lineage.models import Clip
from dataengine.storage import ObjectStore
from dataengine.vision import Detector, load_detector

logger = logging.getLogger(__name__)

NO_MODEL_MESSAGE = "no promoted model yet: train one with `dataengine train`"
#: Stages from which a named clip may be (re)labelled.
LABELLABLE_STAGES = ("selected", "autolabelled", "in_review", "reviewed", "in_dataset")
#: The stage name recorded on quarantine rows this package writes.
QUARANTINE_STAGE = "autolabel"


@dataclass
class AutolabelReport:
    """What an autolabel run did: the clips labelled, the version written for each, and the clips left."""

    clips: list[str]
    versions: dict[str, int]
    n_boxes: int
    skipped: list[str]
    model_id: str
    #: Why each skipped clip was skipped.
    skip_reasons: dict[str, str] = field(default_factory=dict)
    #: Clips whose frames could not be read, with the reason; they are in stage ``quarantined``.
    quarantined: dict[str, str] = field(default_factory=dict)
    n_tracks: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``--json`` output and XCom)."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary."""
        lines = [
            f"autolabelled {len(self.clips)} clip(s) with model {self.model_id}: "
            f"{self.n_boxes} box(es) in {self.n_tracks} track(s); skipped {len(self.skipped)}"
        ]
        lines += [f"skipped {clip_id}: {self.skip_reasons.get(clip_id, '')}" for clip_id in self.skipped]
        lines += [f"quarantined {clip_id}: {why}" for clip_id, why in self.quarantined.items()]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one clip: write a new version, register an unregistered one, or nothing."""

    action: Literal["label", "adopt", "skip"]
    version: int
    parent_version: int | None = None
    existing: ClipAnnotations | None = None


def _is_autolabel_by(source: str, producer: Mapping[str, Any], model_id: str) -> bool:
    return source == "autolabel" and list(producer.get("models") or []) == [model_id]


def _load_version(store: ObjectStore, clip_id: str, version: int) -> ClipAnnotations | None:
    try:
        return formats.load_annotations(store, clip_id, version)
    except (StorageError, FormatError) as exc:
        logger.warning(
            "clip %s: annotation v%d is unreadable, labelling on top of it: %s", clip_id, version, exc
        )
        return None


def _plan(ctx: Context, clip_id: str, model_id: str) -> _Plan:
    """Skip when the newest registered version is already this model's autolabel; adopt a file an
    interrupted run wrote but never registered; otherwise label as the next version."""
    with ctx.db.session() as session:
        row = repository.latest_annotation(session, clip_id)
        registered = (row.version, row.source, dict(row.producer)) if row is not None else None
    if registered is not None and _is_autolabel_by(registered[1], registered[2], model_id):
        return _Plan("skip", registered[0])
    stored = formats.list_versions(ctx.store, clip_id)
    if stored and (registered is None or stored[-1] > registered[0]):
        orphan = _load_version(ctx.store, clip_id, stored[-1])
        if orphan is not None and _is_autolabel_by(orphan.source, orphan.producer, model_id):
            return _Plan("adopt", stored[-1], orphan.parent_version, orphan)
    # The store decides the number (as formats.next_version does); a registered version whose file is
    # gone still counts, so a number is never handed out twice.
    latest = max(stored[-1] if stored else 0, registered[0] if registered else 0)
    return _Plan("label", latest + 1, latest or None)


def _promoted_model_id(ctx: Context) -> str:
    with ctx.db.session() as session:
        model = repository.promoted_model(session)
        if model is None:
            raise ModelError(NO_MODEL_MESSAGE)
        return model.id


def _clips_to_label(ctx: Context, clip_ids: Sequence[str] | None) -> tuple[list[Clip], dict[str, str]]:
    """The clips to label and, for named clips in a stage that does not allow it, why they are left."""
    with ctx.db.session() as session:
        if clip_ids is None:
            return repository.list_clips(session, stage="selected"), {}
        found = repository.list_clips(session, clip_ids=clip_ids)
    unknown = sorted(set(clip_ids) - {clip.id for clip in found})
    if unknown:
        raise NotFoundError(
            f"no clip(s) {', '.join(unknown)} in the lineage database; see `dataengine clips list`"
        )
    left = {
        clip.id: f"stage {clip.stage!r} is not one of {', '.join(LABELLABLE_STAGES)}"
        for clip in found
        if clip.stage not in LABELLABLE_STAGES
    }
    return [clip for clip in found if clip.id not in left], left


def _commit(ctx: Context, saved: SavedAnnotation, annotations: ClipAnnotations, model_id: str) -> int:
    """Register the version and move the clip to ``autolabelled``, in one transaction; returns n_tracks."""
    n_tracks = count_tracks(annotations.frames)
    with ctx.db.session() as session:
        repository.record_annotation(
            session,
            clip_id=saved.clip_id,
            version=saved.version,
            uri=saved.uri,
            sha256=saved.sha256,
            source="autolabel",
            parent_version=annotations.parent_version,
            producer=annotations.producer,
            n_frames=saved.n_frames,
            n_boxes=saved.n_boxes,
        )
        details = {
            "model_id": model_id,
            "version": saved.version,
            "n_boxes": saved.n_boxes,
            "n_tracks": n_tracks,
        }
        repository.set_stage(
            session, saved.clip_id, "autolabelled", run_id=ctx.run_id, actor=ctx.actor, details=details
        )
    return n_tracks


def _adopted(store: ObjectStore, annotations: ClipAnnotations) -> SavedAnnotation:
    """The :class:`SavedAnnotation` of a version file already in the store."""
    key = formats.annotation_key(annotations.clip_id, annotations.version)
    return SavedAnnotation(
        clip_id=annotations.clip_id,
        version=annotations.version,
        uri=store.uri(key),
        sha256=formats.sha256_hex(store.read_bytes(key)),
        n_frames=len(annotations.frames),
        n_boxes=annotations.n_boxes,
        written=False,
    )


@dataclass
class _Labeller:
    """One autolabel run: the context, the detector and the tracker, and the report being filled."""

    ctx: Context
    detector: Detector
    tracker: IoUTracker
    report: AutolabelReport
    batch_size: int

    def label(self, clip: Clip) -> None:
        plan = _plan(self.ctx, clip.id, self.detector.model_id)
        if plan.action == "skip":
            self.report.skipped.append(clip.id)
            self.report.skip_reasons[clip.id] = (
                f"v{plan.version} is already an autolabel by {self.detector.model_id}"
            )
            return
        if plan.action == "adopt" and plan.existing is not None:
            annotations = plan.existing
            saved = _adopted(self.ctx.store, annotations)
        else:
            try:
                annotations = self._annotate(clip.id, plan)
            except InputRejectedError as exc:
                self._quarantine(clip, exc)
                return
            saved = formats.save_annotations(self.ctx.store, annotations)
        n_tracks = _commit(self.ctx, saved, annotations, self.detector.model_id)
        self.report.clips.append(clip.id)
        self.report.versions[clip.id] = saved.version
        self.report.n_boxes += saved.n_boxes
        self.report.n_tracks += n_tracks

    def _annotate(self, clip_id: str, plan: _Plan) -> ClipAnnotations:
        indices, frames = clips.read_sampled_frames(self.ctx.store, clip_id)
        detections = self.detector.predict(
            frames, batch_size=self.batch_size, score_threshold=self.ctx.settings.score_threshold
        )
        sizes = [
            FrameSize(index, int(f.shape[1]), int(f.shape[0]))
            for index, f in zip(indices, frames, strict=True)
        ]
        return ClipAnnotations(
            clip_id=clip_id,
            version=plan.version,
            parent_version=plan.parent_version,
            source="autolabel",
            producer={"models": [self.detector.model_id]},
            classes=list(self.detector.classes),
            frames=label_frames(detections, sizes, classes=self.detector.classes, tracker=self.tracker),
        )

    def _quarantine(self, clip: Clip, error: InputRejectedError) -> None:
        logger.warning("quarantining clip %s: %s", clip.id, error)
        with self.ctx.db.session() as session:
            repository.quarantine(
                session,
                kind="clip",
                input=error.input,
                reason=error.reason,
                stage=QUARANTINE_STAGE,
                video_id=clip.video_id,
                clip_id=clip.id,
                run_id=self.ctx.run_id,
            )
        self.report.quarantined[clip.id] = error.reason


def autolabel(
    ctx: Context,
    *,
    clip_ids: Sequence[str] | None = None,
    batch_size: int = 8,
    iou_threshold: float = 0.3,
    max_gap: int = 2,
) -> AutolabelReport:
    """Label the clips in stage ``selected`` (or the named ones) with the promoted model.

    Each clip gets a new annotation version (``source="autolabel"``) with one frame per sampled frame and
    tracked boxes, registered in the lineage database, and moves to ``autolabelled``. A clip whose newest
    version is already this model's autolabel is skipped; a clip with unreadable frames is quarantined.
    Raises :class:`ModelError` when no model is promoted.
    """
    model_id = _promoted_model_id(ctx)
    todo, left = _clips_to_label(ctx, clip_ids)
    tracker = IoUTracker(iou_threshold=iou_threshold, max_gap=max_gap)
    report = AutolabelReport([], {}, 0, sorted(left), model_id, skip_reasons=dict(left))
    if todo:
        detector = load_detector(ctx.store, model_id, device=ctx.settings.device)
        labeller = _Labeller(ctx, detector, tracker, report, batch_size)
        for clip in todo:
            labeller.label(clip)
    logger.info("%s", report.summary())
    return report
