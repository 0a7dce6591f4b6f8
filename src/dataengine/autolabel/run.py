"""``autolabel``: label selected clips with the detector ensemble and write a new annotation version."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dataengine import clips, formats
from dataengine.autolabel.frames import FrameItem, stream_frames
from dataengine.autolabel.labelling import FrameSize, count_tracks
from dataengine.autolabel.members import EnsemblePlan
from dataengine.autolabel.pipeline import PIPELINE, AutolabelParams, fuse, label_clip, strongest_view
from dataengine.autolabel.prefetch import prefetched
from dataengine.autolabel.report import AutolabelReport
from dataengine.autolabel.selection import ensemble_plan
from dataengine.config import PROMOTED_ALIAS, Settings
from dataengine.context import Context
from dataengine.errors import (
    ConfigError,
    FormatError,
    ModelError,
    NotFoundError,
    ObjectExistsError,
    StorageError,
)
from dataengine.formats import ClipAnnotations, SavedAnnotation
from dataengine.lineage import Clip
from dataengine.lineage.annotations import latest_annotation, record_saved
from dataengine.lineage.clips import list_clips, set_stage
from dataengine.lineage.model_registry import promoted_model
from dataengine.lineage.quarantine import quarantine
from dataengine.progress import NO_PROGRESS, Progress
from dataengine.storage import ObjectStore
from dataengine.vision import Detections, FrameDetector, load_any_detector
from dataengine.vision.detection_cache import load_detections

logger = logging.getLogger(__name__)

NO_MODEL_MESSAGE = (
    "no promoted model yet: import one you have (`dataengine model import`, docs/quickstart.md), train one "
    "with `dataengine train`, or export the selected clips with empty pre-labels (`dataengine review "
    "export`) to label them from scratch"
)
#: Stages from which a named clip may be (re)labelled.
LABELLABLE_STAGES = ("selected", "autolabelled", "in_review", "reviewed", "in_dataset")
#: The stage name recorded on quarantine rows this package writes.
QUARANTINE_STAGE = "autolabel"


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to do with one clip: write a new version, register an unregistered one, or nothing."""

    action: Literal["label", "adopt", "skip"]
    version: int
    parent_version: int | None = None
    existing: ClipAnnotations | None = None


def _is_autolabel_by(source: str, producer: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether a version is an autolabel by the same models with the same parameters."""
    return (
        source == "autolabel"
        and list(producer.get("models") or []) == list(expected["models"])
        and producer.get("params") == expected["params"]
    )


def _load_version(store: ObjectStore, clip_id: str, version: int) -> ClipAnnotations | None:
    try:
        return formats.load_annotations(store, clip_id, version)
    except (StorageError, FormatError) as exc:
        logger.warning(
            "clip %s: annotation v%d is unreadable, labelling on top of it: %s", clip_id, version, exc
        )
        return None


def _plan(ctx: Context, clip_id: str, producer: Mapping[str, Any]) -> _Plan:
    """Skip when the newest registered version is already this ensemble's autolabel; adopt a file an
    interrupted run wrote but never registered; otherwise label as the next version."""
    with ctx.db.session() as session:
        row = latest_annotation(session, clip_id)
        registered = (row.version, row.source, dict(row.producer)) if row is not None else None
    if registered is not None and _is_autolabel_by(registered[1], registered[2], producer):
        return _Plan("skip", registered[0])
    stored = formats.list_versions(ctx.store, clip_id)
    if stored and (registered is None or stored[-1] > registered[0]):
        orphan = _load_version(ctx.store, clip_id, stored[-1])
        if orphan is not None and _is_autolabel_by(orphan.source, orphan.producer, producer):
            return _Plan("adopt", stored[-1], orphan.parent_version, orphan)
    # The store decides the number (as formats.next_version does); a registered version whose file is
    # gone still counts, so a number is never handed out twice.
    latest = max(stored[-1] if stored else 0, registered[0] if registered else 0)
    return _Plan("label", latest + 1, latest or None)


def _promoted_model_id(ctx: Context) -> str:
    with ctx.db.session() as session:
        model = promoted_model(session)
        if model is None:
            raise ModelError(NO_MODEL_MESSAGE)
        return model.id


def _clips_to_label(ctx: Context, clip_ids: Sequence[str] | None) -> tuple[list[Clip], dict[str, str]]:
    """The clips to label and, for named clips in a stage that does not allow it, why they are left."""
    with ctx.db.session() as session:
        if clip_ids is None:
            return list_clips(session, stage="selected"), {}
        found = list_clips(session, clip_ids=clip_ids)
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
        record_saved(
            session,
            saved,
            source="autolabel",
            parent_version=annotations.parent_version,
            producer=annotations.producer,
        )
        details = {
            "model_id": model_id,
            "version": saved.version,
            "n_boxes": saved.n_boxes,
            "n_tracks": n_tracks,
        }
        set_stage(session, saved.clip_id, "autolabelled", run_id=ctx.run_id, actor=ctx.actor, details=details)
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
class _Pending:
    """A clip being labelled: its plan and, per sampled position, the fused detections and frame size."""

    clip: Clip
    plan: _Plan
    fused: dict[int, Detections] = field(default_factory=dict)
    sizes: dict[int, FrameSize] = field(default_factory=dict)
    #: Each class's boxes as its strongest member saw them (hindsight recovers tracks from them).
    strong: dict[int, Detections] = field(default_factory=dict)


@dataclass
class _Labeller:
    """One autolabel run: the context, the ensemble and its parameters, and the report being filled."""

    ctx: Context
    detectors: list[FrameDetector]
    params: AutolabelParams
    report: AutolabelReport
    batch_size: int
    workers: int
    plan: EnsemblePlan
    progress: Progress = NO_PROGRESS
    prefetch: int = 2  # one step per clip: labelled, skipped or quarantined

    @property
    def producer(self) -> dict[str, Any]:
        return {
            "models": [d.model_id for d in self.detectors],
            "pipeline": PIPELINE,
            "params": self.params.to_producer(),
            "ensemble": {"basis": self.plan.basis, "dropped": dict(self.plan.dropped)},
        }

    def _keep(self, clip: _Pending, position: int, per_model: Sequence[Detections]) -> None:
        """One frame's fused detections and its strongest-member view."""
        clip.fused[position] = fuse(per_model, self.params)
        if len(per_model) > 1:
            clip.strong[position] = strongest_view(per_model, self.params)

    def label_all(self, todo: Sequence[Clip]) -> None:
        """Plan every clip, then stream the frames of those to label through the ensemble."""
        pending: dict[str, _Pending] = {}
        self.progress.start("autolabel", len(todo))
        for clip in todo:
            plan = _plan(self.ctx, clip.id, self.producer)
            if plan.action == "skip":
                self.report.skipped.append(clip.id)
                reason = f"v{plan.version} is already an autolabel by {self.report.model_id}"
                self.report.skip_reasons[clip.id] = reason
                self.progress.advance()
            elif plan.action == "adopt" and plan.existing is not None:
                annotations = plan.existing
                self._register(_adopted(self.ctx.store, annotations), annotations)
            else:
                pending[clip.id] = _Pending(clip, plan)
        for clip_id in [c for c, clip in pending.items() if self._from_cache(clip)]:
            self._finish(pending.pop(clip_id))
        if not pending:
            return
        batches = stream_frames(
            self.ctx.store,
            list(pending),
            batch_size=self.batch_size,
            workers=self.workers,
            prefetch=self.prefetch,
        )
        detected = self._forward(batches)
        if self.prefetch:
            # The detectors run in a thread of their own, one batch ahead, while this thread fuses,
            # tracks, writes and commits the batch before (PyTorch releases the GIL in its operators).
            detected = prefetched(detected, 1, name="autolabel-forward")
        # closing: an error in the detectors or the writing stops the threads (and the workers) at once.
        with closing(detected):
            for batch, per_model in detected:
                self._detect(batch, per_model, pending)

    def _forward(
        self, batches: Generator[list[FrameItem], None, None]
    ) -> Generator[tuple[list[FrameItem], list[list[Detections]]], None, None]:
        """Each batch with every model's detections of its readable frames (one forward pass each)."""
        with closing(batches):
            for batch in batches:
                frames = [item.rgb for item in batch if item.rgb is not None]
                if not frames:  # only unreadable clips' error items: no forward pass
                    yield batch, [[] for _ in self.detectors]
                else:
                    yield batch, [detector.predict_batch(frames) for detector in self.detectors]

    def _from_cache(self, clip: _Pending) -> bool:
        """Fill the clip's detections from the per-clip cache (triggers write it) when every model's
        detections of these frames are there, so the frames are neither read nor run again."""
        try:
            meta = clips.read_meta(self.ctx.store, clip.clip.id)
        except (StorageError, FormatError):
            return False  # the stream reads it again and quarantines the clip with the reason
        per_model = []
        for detector in self.detectors:
            cached = load_detections(
                self.ctx.store,
                clip.clip.id,
                detector.model_id,
                indices=meta.sampled,
                min_score=self.params.low_score,
            )
            if cached is None or not meta.sampled:
                return False
            per_model.append(cached)
        if not self._frames_look_readable(clip.clip.id, meta.sampled):
            return False  # the stream decodes them and quarantines the clip with the reason
        for position, index in enumerate(meta.sampled):
            self._keep(clip, position, [cached[position] for cached in per_model])
            clip.sizes[position] = FrameSize(index, meta.width, meta.height)
        self.report.from_cache.append(clip.clip.id)
        return True

    def _frames_look_readable(self, clip_id: str, indices: Sequence[int]) -> bool:
        """Whether every frame is there and starts like a JPEG: the reviewer needs the frames even when
        the detections are cached (bytes only, no decoding)."""
        try:
            return all(
                self.ctx.store.read_bytes(clips.frame_key(clip_id, i))[:2] == b"\xff\xd8" for i in indices
            )
        except StorageError:
            return False

    def _detect(
        self, batch: list[FrameItem], per_model: list[list[Detections]], pending: dict[str, _Pending]
    ) -> None:
        """Quarantine the clips whose reading failed, keep each frame's fused detections, and finish the
        clips whose last frame this batch holds. ``per_model`` holds each model's detections of the
        batch's readable frames, in order."""
        for item in batch:
            if item.error is not None and item.clip_id in pending:
                self._quarantine(pending.pop(item.clip_id).clip, item)
        readable = [item for item in batch if item.rgb is not None]
        for i, item in enumerate(readable):
            if item.clip_id not in pending or item.rgb is None:
                continue
            clip = pending[item.clip_id]
            self._keep(clip, item.position, [output[i] for output in per_model])
            height, width = item.rgb.shape[:2]
            clip.sizes[item.position] = FrameSize(item.index, int(width), int(height))
            if len(clip.fused) == item.n_frames:
                self._finish(pending.pop(item.clip_id))

    def _finish(self, clip: _Pending) -> None:
        positions = sorted(clip.fused)
        sizes = [clip.sizes[p] for p in positions]
        annotations = ClipAnnotations(
            clip_id=clip.clip.id,
            version=clip.plan.version,
            parent_version=clip.plan.parent_version,
            source="autolabel",
            producer=self.producer,
            classes=list(self.params.classes),
            frames=label_clip(
                [clip.fused[p] for p in positions],
                sizes,
                self.params,
                n_models=len(self.detectors),
                strong=[clip.strong[p] for p in positions] if clip.strong else None,
            ),
        )
        try:
            saved = formats.save_annotations(self.ctx.store, annotations)
        except ObjectExistsError:
            # A concurrent run labelled this clip with the same ensemble first (its file differs from
            # ours only in the time it was written): register that version, as a rerun adopts it.
            other = _load_version(self.ctx.store, clip.clip.id, clip.plan.version)
            if other is None or not _is_autolabel_by(other.source, other.producer, self.producer):
                raise
            saved, annotations = _adopted(self.ctx.store, other), other
        self._register(saved, annotations)

    def _register(self, saved: SavedAnnotation, annotations: ClipAnnotations) -> None:
        n_tracks = _commit(self.ctx, saved, annotations, self.report.model_id)
        self.report.clips.append(saved.clip_id)
        self.report.versions[saved.clip_id] = saved.version
        self.report.n_boxes += saved.n_boxes
        self.report.n_tracks += n_tracks
        self.progress.advance()

    def _quarantine(self, clip: Clip, item: FrameItem) -> None:
        reason = item.error or "unreadable"
        logger.warning("quarantining clip %s: %s: %s", clip.id, item.error_input, reason)
        with self.ctx.db.session() as session:
            quarantine(
                session,
                kind="clip",
                input=item.error_input or clip.id,
                reason=reason,
                stage=QUARANTINE_STAGE,
                video_id=clip.video_id,
                clip_id=clip.id,
                run_id=self.ctx.run_id,
            )
        self.report.quarantined[clip.id] = reason
        self.progress.advance()


def _model_ids(ctx: Context) -> tuple[list[str], list[float]]:
    """The ensemble's model ids and their fusion weights: ``autolabel_models`` with ``promoted``
    standing for the model promoted now (an empty list means the promoted model alone).

    A model named twice (listed by id and promoted since) counts once, with its first weight. When no
    model is promoted, the alias drops out if other members remain.
    """
    settings = ctx.settings
    configured = list(settings.autolabel_models) or [PROMOTED_ALIAS]
    weights = list(settings.autolabel_model_weights) or [1.0] * len(configured)
    if len(weights) != len(configured):
        raise ConfigError(
            f"autolabel_model_weights has {len(weights)} weight(s) for {len(configured)} autolabel model(s)"
        )
    promoted: str | None = None
    if PROMOTED_ALIAS in configured:
        with ctx.db.session() as session:
            row = promoted_model(session)
            promoted = row.id if row is not None else None
        if promoted is None and configured == [PROMOTED_ALIAS]:
            raise ModelError(NO_MODEL_MESSAGE)
    ids: list[str] = []
    kept: list[float] = []
    for name, weight in zip(configured, weights, strict=True):
        model_id = promoted if name == PROMOTED_ALIAS else name
        if model_id is not None and model_id not in ids:
            ids.append(model_id)
            kept.append(weight)
    return ids, kept


def _load_ensemble(ctx: Context, model_ids: Sequence[str]) -> list[FrameDetector]:
    detectors = [load_any_detector(ctx.store, model_id, device=ctx.settings.device) for model_id in model_ids]
    classes = detectors[0].classes
    for detector in detectors[1:]:
        if detector.classes != classes:
            raise ModelError(
                f"the ensemble's models must share their classes: {detectors[0].model_id} has {classes}, "
                f"{detector.model_id} has {detector.classes}"
            )
    return detectors


def _prepare(
    ctx: Context, settings: Settings, model_ids: Sequence[str]
) -> tuple[list[FrameDetector], AutolabelParams, EnsemblePlan]:
    """The members to run (weak ones left out), the pipeline's parameters and the ensemble's plan.

    ``settings`` carry the members' weights; they are fixed when the user set them.
    """
    detectors = _load_ensemble(ctx, model_ids)
    classes = detectors[0].classes
    fixed = settings.autolabel_model_weights if ctx.settings.autolabel_model_weights else None
    try:
        params = AutolabelParams.from_settings(settings, classes=classes, n_models=len(detectors))
        params.thresholds  # noqa: B018  # unknown class names in the thresholds fail here, early
        plan = ensemble_plan(ctx, model_ids, classes, fixed_weights=fixed)
        params = params.with_plan(plan)
    except ValueError as exc:
        raise ConfigError(f"autolabel settings: {exc}") from exc
    return [d for d in detectors if d.model_id in plan.model_ids], params, plan


def frame_workers(settings: Settings, device: torch.device) -> int:
    """DataLoader workers that read and decode the frames: ``autolabel_workers``, except on the CPU
    when that setting was left at its default and PyTorch's threads already take every core.

    Then a worker process only competes with the forward pass for the same cores: on 2 cores it made
    the pipeline's overhead over the bare forward passes 51% against 19% when the frames were decoded in
    the calling process (docs/performance.md, "Autolabel"). A JPEG decodes in under 1 ms, far less
    than a forward pass, so nothing is gained by decoding it elsewhere when no core is free.
    """
    if "autolabel_workers" in settings.model_fields_set or device.type != "cpu":
        return settings.autolabel_workers
    spare = (os.cpu_count() or 1) - torch.get_num_threads()
    return min(settings.autolabel_workers, max(spare, 0))


def autolabel(
    ctx: Context,
    *,
    clip_ids: Sequence[str] | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    prefetch: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> AutolabelReport:
    """Label the clips in stage ``selected`` (or the named ones) with the ensemble, tracked, with hindsight.

    The ensemble is ``settings.autolabel_models`` (``promoted`` naming the promoted model). Each clip
    gets a new annotation version (``source="autolabel"``) with one frame per sampled frame, registered
    in the lineage database, and moves to ``autolabelled``; each clip is committed as soon as it is
    done, so a rerun after a crash skips it. A clip whose newest version is already an autolabel by the
    same models and parameters is skipped; a clip with unreadable frames is quarantined. ``workers`` and
    ``prefetch`` (defaults: :func:`frame_workers`, ``autolabel_prefetch``) say who decodes the frames
    ahead of the detectors: worker processes or, with no workers, a thread of this process, ``prefetch``
    batches ahead (no workers and ``prefetch=0``: each batch is decoded when it is needed). Raises
    :class:`ModelError` when no model is promoted and none is configured. ``progress`` counts the clips.
    """
    model_ids, weights = _model_ids(ctx)
    settings = ctx.settings.model_copy(update={"autolabel_model_weights": weights})
    todo, left = _clips_to_label(ctx, clip_ids)
    report = AutolabelReport([], {}, 0, sorted(left), "+".join(model_ids), skip_reasons=dict(left))
    report.model_ids = list(model_ids)
    if todo:
        detectors, params, plan = _prepare(ctx, settings, model_ids)
        report.model_ids = [d.model_id for d in detectors]
        report.model_id = "+".join(report.model_ids)
        report.dropped_models, report.weights_basis = dict(plan.dropped), plan.basis
        labeller = _Labeller(
            ctx,
            detectors,
            params,
            report,
            batch_size or settings.autolabel_batch_size,
            frame_workers(settings, detectors[0].device) if workers is None else workers,
            plan,
            progress,
            settings.autolabel_prefetch if prefetch is None else prefetch,
        )
        labeller.label_all(todo)
    logger.info("%s", report.summary())
    return report
