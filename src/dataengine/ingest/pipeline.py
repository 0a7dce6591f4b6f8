"""The ingest stage: input videos → clips with sampled frames and ``meta.json``, registered in lineage.

Per video: hash (cached per landing file), register as ``ingesting``, check the file, read its frame
index, plan the clips, then decode once while each clip is stream-copied or re-encoded and its
sampled frames are written as JPEG (one lineage transaction per clip); then mark the video
``ingested``. A bad input is quarantined and the batch goes on; a video damaged in the middle keeps
its clean clips and records the damaged stretches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import ConfigError, InputRejectedError
from dataengine.ingest.clipper import Sampling, VideoFacts
from dataengine.ingest.cutter import CutOptions, Cutter, Gap
from dataengine.ingest.decode import DecodeLog, decode_frames
from dataengine.ingest.discovery import discover_with_hashes
from dataengine.ingest.frames import JpegWriter
from dataengine.ingest.hashcache import HashCache, key_fingerprint
from dataengine.ingest.index import FrameIndex, scan
from dataengine.ingest.plan import ClipPlan, plan_clips
from dataengine.ingest.probe import VideoInfo, open_video, probe, sniff
from dataengine.ingest.record import (
    QUARANTINE_STAGE,
    Identity,
    LineageRecorder,
    describe_gaps,
    incomplete_clips,
    quarantine_input,
    quarantine_key,
    quarantine_unrepaired,
    record_gaps,
    recorded_ingest_details,
    register_video,
)
from dataengine.ingest.report import IngestReport, QuarantinedInput
from dataengine.ingest.skipping import frames_to_skip, needed_frames
from dataengine.ingest.sources import compile_path_pattern, recording_info, resolve_input, source_sha256
from dataengine.lineage.videos import get_video, list_videos
from dataengine.progress import NO_PROGRESS, Progress

__all__ = ["QUARANTINE_STAGE", "ingest", "quarantine_key"]
# Codecs an MP4 holds as they are: clips of these are cut by stream copy where the keyframes allow.
_COPYABLE = {"h264", "hevc", "mpeg4", "av1", "vp9"}


@dataclass(frozen=True, slots=True)
class _Params:
    clip_seconds: float
    sampling: Sampling
    max_resolution: int
    keyframe_tolerance: float
    codecs: list[str]
    workers: int
    cut: CutOptions
    skip_frames: bool


def _params(settings: Settings, clip_seconds: float | None, sample_fps: float | None) -> _Params:
    params = _Params(
        clip_seconds=settings.clip_seconds if clip_seconds is None else clip_seconds,
        sampling=Sampling(
            sample_fps=settings.sample_fps if sample_fps is None else sample_fps,
            jpeg_quality=settings.jpeg_quality,
            max_side=settings.jpeg_max_side or None,
        ),
        max_resolution=settings.max_resolution,
        keyframe_tolerance=settings.keyframe_tolerance,
        codecs=list(settings.ingest_codecs),
        workers=settings.ingest_jpeg_workers,
        skip_frames=settings.ingest_skip_frames,
        cut=CutOptions(
            split_on_scene_cuts=settings.split_on_scene_cuts,
            scene_cut_threshold=settings.scene_cut_threshold,
            min_clip_seconds=settings.min_clip_seconds,
            drop_duplicate_clips=settings.drop_duplicate_clips,
            duplicate_threshold=settings.duplicate_threshold,
        ),
    )
    if params.clip_seconds <= 0 or params.sampling.sample_fps < 0:
        raise ConfigError(
            "ingest needs clip_seconds > 0 and sample_fps >= 0, "
            f"got {params.clip_seconds} and {params.sampling.sample_fps}"
        )
    compile_path_pattern(settings.ingest_path_pattern)  # A bad pattern fails before any work.
    return params


def ingest(
    ctx: Context,
    inputs: Sequence[str] | None = None,
    *,
    clip_seconds: float | None = None,
    sample_fps: float | None = None,
    repair: bool = False,
    progress: Progress = NO_PROGRESS,
) -> IngestReport:
    """Ingest ``inputs`` (store keys, store URIs or local paths), or every new landing video when None.

    Rerunning over the same inputs adds no rows or objects: complete clips are kept as they are, and
    a clip left incomplete by a killed run is redone. A named input that was ingested already is
    checked: clips whose objects are missing (deleted by hand) are rebuilt from the source. With
    ``repair`` and no inputs, every ingested video in lineage is checked that way. ``progress`` counts
    the inputs.
    """
    params = _params(ctx.settings, clip_seconds, sample_fps)
    todo: list[tuple[str, str | None]]
    if inputs is not None:
        todo = [(raw, None) for raw in inputs]
    else:
        todo = list(discover_with_hashes(ctx))
        if repair:
            todo += [(uri, sha256) for uri, sha256 in _ingested_videos(ctx)]
    report = IngestReport()
    cache = HashCache(ctx.store)
    progress.start("ingest", len(todo))
    for raw, sha256 in todo:
        progress.advance(0, description=f"ingest {raw.rsplit('/', 1)[-1]}")
        check = repair or inputs is not None
        _ingest_input(ctx, raw, sha256=sha256, params=params, report=report, cache=cache, check=check)
        progress.advance()
    cache.save()
    return report


def _ingested_videos(ctx: Context) -> list[tuple[str, str | None]]:
    with ctx.db.session() as session:
        return [(v.uri, v.sha256) for v in list_videos(session, status="ingested")]


def _identify(ctx: Context, raw: str, sha256: str | None, cache: HashCache) -> Identity:
    source = resolve_input(ctx.store, raw)
    if sha256 is None and source.key is not None:
        version = key_fingerprint(ctx.store, source.key)
        sha256 = cache.get(source.key, version)
        if sha256 is None:
            sha256 = source_sha256(ctx.store, source)
            cache.put(source.key, version, sha256)
    camera, recorded_at = recording_info(
        source, landing_prefix=ctx.settings.landing_prefix, pattern=ctx.settings.ingest_path_pattern
    )
    return Identity(source, sha256 or source_sha256(ctx.store, source), camera, recorded_at)


def _ingest_input(
    ctx: Context,
    raw: str,
    *,
    sha256: str | None,
    params: _Params,
    report: IngestReport,
    cache: HashCache,
    check: bool,
) -> None:
    try:
        identity = _identify(ctx, raw, sha256, cache)
    except InputRejectedError as exc:
        quarantine_input(ctx, report, input_name=raw, reason=exc.reason, identity=None)
        return
    # One run at a time works on a video: a second one would write the same objects, and its
    # clean-up of a failed clip could delete what the first one just wrote.
    with ctx.db.lock(f"ingest/{identity.video_id}") as held:
        if not held:
            report.busy_videos.append(identity.video_id)
            return
        _ingest_video(ctx, identity, params=params, report=report, check=check)


def _ingest_video(
    ctx: Context, identity: Identity, *, params: _Params, report: IngestReport, check: bool
) -> None:
    only: set[str] | None = None
    with ctx.db.session() as session:
        video = get_video(session, identity.video_id)
    if video is not None and video.status == "ingested":
        only = incomplete_clips(ctx, identity.video_id) if check else set()
        if not only:
            report.skipped_videos.append(identity.video_id)
            return
        params = _recorded_params(ctx, identity.video_id, params)
    with ctx.db.session() as session:
        register_video(session, identity, status="ingesting")
    uri = identity.source.uri
    try:
        facts, index, gaps, log = _cut_video(ctx, identity, params=params, report=report, only=only)
    except InputRejectedError as exc:
        quarantine_input(ctx, report, input_name=uri, reason=exc.reason, identity=identity)
        return
    error = None
    if gaps:
        error = describe_gaps(uri, gaps, index, log.errors)
        record_gaps(ctx, identity, gaps, index, error)
        report.quarantined.append(QuarantinedInput(input=uri, video_id=identity.video_id, reason=error))
    if only:
        quarantine_unrepaired(ctx, report, identity, only)
    duration = index.end_time(index.n_frames - 1)
    with ctx.db.session() as session:
        register_video(session, identity, status="ingested", facts=facts, duration=duration, error=error)
    (report.videos if only is None else report.repaired_videos).append(identity.video_id)


def _recorded_params(ctx: Context, video_id: str, params: _Params) -> _Params:
    """``params`` with the clip length and sampling rate the video was first ingested with, so that a
    repair cuts the same clips."""
    recorded = recorded_ingest_details(ctx, video_id)
    sampling = replace(
        params.sampling, sample_fps=float(recorded.get("sample_fps", params.sampling.sample_fps))
    )
    return replace(
        params, clip_seconds=float(recorded.get("clip_seconds", params.clip_seconds)), sampling=sampling
    )


def _cut_video(
    ctx: Context, identity: Identity, *, params: _Params, report: IngestReport, only: set[str] | None
) -> tuple[VideoFacts, FrameIndex, list[Gap], DecodeLog]:
    """Decode and clip one video; returns its facts, frame index, damaged stretches and decoder log."""
    name = identity.source.uri
    with identity.source.local_file(ctx.store) as path:
        sniff(path, name=name)
        with open_video(path, name=name) as container:
            info = probe(
                container, path, name=name, max_resolution=params.max_resolution, codecs=params.codecs
            )
            index = scan(path, name=name, fps=info.fps)
            facts = _facts(identity, info, path)
            recorder = LineageRecorder(
                ctx,
                report,
                base_details={"sample_fps": params.sampling.sample_fps, "clip_seconds": params.clip_seconds},
            )
            jpegs = JpegWriter(
                ctx.store,
                quality=params.sampling.jpeg_quality,
                max_side=params.sampling.max_side,
                workers=params.workers,
            )
            log = DecodeLog()
            plan = plan_clips(index, clip_seconds=params.clip_seconds, tolerance=params.keyframe_tolerance)
            options = _cut_options(params.cut, copyable=info.codec in _COPYABLE)
            skip = _frames_to_skip(index, plan, params, options)
            with tempfile.TemporaryDirectory(prefix="dataengine-ingest-") as workdir:
                cutter = Cutter(
                    store=ctx.store,
                    facts=facts,
                    index=index,
                    plan=plan,
                    sampling=params.sampling,
                    options=options,
                    jpegs=jpegs,
                    workdir=Path(workdir),
                    recorder=recorder,
                    only=only,
                    skip=skip,
                )
                try:
                    for decoded in decode_frames(container, info.stream, index, log, skip):
                        cutter.push(decoded)
                    cutter.close()
                finally:
                    cutter.abort()
                    jpegs.close()
    _check_decoded(name, log, cutter, index)
    return facts, index, cutter.gaps, log


def _frames_to_skip(
    index: FrameIndex, plan: ClipPlan, params: _Params, options: CutOptions
) -> NDArray[np.bool_] | None:
    """Frames the decoder can leave out; none when scene cuts are looked for (every frame counts)."""
    if not params.skip_frames or options.split_on_scene_cuts:
        return None
    needed = needed_frames(index, plan, sample_fps=params.sampling.sample_fps, copyable=options.copyable)
    return frames_to_skip(index, needed)


def _cut_options(options: CutOptions, *, copyable: bool) -> CutOptions:
    return CutOptions(
        split_on_scene_cuts=options.split_on_scene_cuts,
        scene_cut_threshold=options.scene_cut_threshold,
        min_clip_seconds=options.min_clip_seconds,
        drop_duplicate_clips=options.drop_duplicate_clips,
        duplicate_threshold=options.duplicate_threshold,
        copyable=copyable,
    )


def _facts(identity: Identity, info: VideoInfo, path: Path) -> VideoFacts:
    """The video's facts; the path's camera and time win over the container's tags."""
    return VideoFacts(
        video_id=identity.video_id,
        source_uri=identity.source.uri,
        path=path,
        fps=info.fps,
        width=info.width,
        height=info.height,
        codec=info.codec,
        rotation=info.rotation,
        camera=identity.camera or info.camera,
        recorded_at=identity.recorded_at or info.recorded_at,
    )


def _check_decoded(name: str, log: DecodeLog, cutter: Cutter, index: FrameIndex) -> None:
    """A video with no decodable frame, or no clean clip, is refused as a whole."""
    cause = f": {log.errors[0]}" if log.errors else ""
    if log.frames == 0:
        raise InputRejectedError(name, f"{name} has a video stream with no decodable frames{cause}")
    if cutter.kept == 0 and cutter.gaps:
        reason = describe_gaps(name, cutter.gaps, index, log.errors)
        raise InputRejectedError(name, f"{reason}; no clip decodes cleanly")
