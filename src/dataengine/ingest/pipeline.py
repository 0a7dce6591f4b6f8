"""The ingest stage: input videos → clips with sampled frames and ``meta.json``, registered in lineage.

Per video: hash (cached per landing file), register as ``ingesting``, check the file, read its frame
index, plan the clips, then decode once while each clip is stream-copied or re-encoded and its
sampled frames are written as JPEG (one lineage transaction per clip); then mark the video
``ingested``. A bad input is quarantined and the batch goes on; a video damaged in the middle keeps
its clean clips and records the damaged stretches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from dataengine.context import Context
from dataengine.errors import InputRejectedError
from dataengine.ingest.ahead import DecodeAhead
from dataengine.ingest.clipper import VideoFacts
from dataengine.ingest.cutter import Cutter, Gap
from dataengine.ingest.decode import DecodedFrame, DecodeLog, decode_frames
from dataengine.ingest.discovery import discover_with_hashes
from dataengine.ingest.frames import JpegWriter
from dataengine.ingest.hashcache import HashCache, key_fingerprint
from dataengine.ingest.index import FrameIndex
from dataengine.ingest.prepare import Params, Prepared, ingest_params, prepare_video
from dataengine.ingest.probe import VideoInfo
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
from dataengine.ingest.sources import recording_info, resolve_input, source_sha256
from dataengine.lineage.videos import get_video, list_videos
from dataengine.progress import NO_PROGRESS, Progress

__all__ = ["QUARANTINE_STAGE", "ingest", "quarantine_key"]


def ingest(
    ctx: Context,
    inputs: Sequence[str] | None = None,
    *,
    clip_seconds: float | None = None,
    sample_fps: float | None = None,
    repair: bool = False,
    progress: Progress = NO_PROGRESS,
    ahead: DecodeAhead | None = None,
) -> IngestReport:
    """Ingest ``inputs`` (store keys, store URIs or local paths), or every new landing video when None.

    Rerunning over the same inputs adds no rows or objects: complete clips are kept as they are, and
    a clip left incomplete by a killed run is redone. A named input that was ingested already is
    checked: clips whose objects are missing (deleted by hand) are rebuilt from the source. With
    ``repair`` and no inputs, every ingested video in lineage is checked that way. ``progress`` counts
    the inputs. ``ahead`` is a video already being decoded (``ingest/ahead.py``): its frames are used
    when the pipeline gets to that file with the same parameters; it is stopped in any case.
    """
    try:
        return _ingest(ctx, inputs, clip_seconds, sample_fps, repair, progress, ahead)
    finally:
        if ahead is not None:
            ahead.close()


def _ingest(
    ctx: Context,
    inputs: Sequence[str] | None,
    clip_seconds: float | None,
    sample_fps: float | None,
    repair: bool,
    progress: Progress,
    ahead: DecodeAhead | None,
) -> IngestReport:
    params = ingest_params(ctx.settings, clip_seconds, sample_fps)
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
        _ingest_input(
            ctx, raw, sha256=sha256, params=params, report=report, cache=cache, check=check, ahead=ahead
        )
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
    params: Params,
    report: IngestReport,
    cache: HashCache,
    check: bool,
    ahead: DecodeAhead | None,
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
        _ingest_video(ctx, identity, params=params, report=report, check=check, ahead=ahead)


def _ingest_video(
    ctx: Context,
    identity: Identity,
    *,
    params: Params,
    report: IngestReport,
    check: bool,
    ahead: DecodeAhead | None,
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
        facts, index, gaps, log = _cut_video(
            ctx, identity, params=params, report=report, only=only, ahead=ahead
        )
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


def _recorded_params(ctx: Context, video_id: str, params: Params) -> Params:
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
    ctx: Context,
    identity: Identity,
    *,
    params: Params,
    report: IngestReport,
    only: set[str] | None,
    ahead: DecodeAhead | None,
) -> tuple[VideoFacts, FrameIndex, list[Gap], DecodeLog]:
    """Decode and clip one video; returns its facts, frame index, damaged stretches and decoder log."""
    name = identity.source.uri
    with identity.source.local_file(ctx.store) as path:
        taken = None if ahead is None else ahead.take(path, params)
        if taken is None:
            prepared = prepare_video(path, name=name, params=params)
            log = DecodeLog()
            frames = _decode(prepared, log)
        else:
            prepared, frames, log = taken
        try:
            facts = _facts(identity, prepared.info, path)
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
            index = prepared.index
            with tempfile.TemporaryDirectory(prefix="dataengine-ingest-") as workdir:
                cutter = Cutter(
                    store=ctx.store,
                    facts=facts,
                    index=index,
                    plan=prepared.plan,
                    sampling=params.sampling,
                    options=prepared.options,
                    jpegs=jpegs,
                    workdir=Path(workdir),
                    recorder=recorder,
                    only=only,
                    skip=prepared.skip,
                )
                try:
                    for decoded in frames:
                        cutter.push(decoded)
                    cutter.close()
                finally:
                    cutter.abort()
                    jpegs.close()
        finally:
            if taken is not None:
                assert ahead is not None
                ahead.close()  # Joins the decoder thread before the file is closed.
            prepared.close()
    _check_decoded(name, log, cutter, index)
    return facts, index, cutter.gaps, log


def _decode(prepared: Prepared, log: DecodeLog) -> Iterator[DecodedFrame]:
    return decode_frames(prepared.container, prepared.info.stream, prepared.index, log, prepared.skip)


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
