"""The ingest stage: input videos → clips with sampled frames and ``meta.json``, registered in lineage.

Per video: hash (streamed), register as ``ingesting``, decode frame by frame, cut into clips of
``round(clip_seconds * fps)`` frames, write each clip (one lineage transaction per clip), then mark the
video ``ingested``. A bad input is quarantined and the batch goes on.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from dataengine.clips import ClipMeta, clip_id_for, clip_prefix, read_meta, video_id_for
from dataengine.context import Context
from dataengine.errors import ConfigError, InputRejectedError
from dataengine.formats import utc_now_iso
from dataengine.ingest.clipper import ClipWriter, VideoFacts, clip_is_written, clip_length, sample_step
from dataengine.ingest.decode import DecodedFrame, decode_frames, open_video, probe, sniff
from dataengine.ingest.discovery import discover_with_hashes
from dataengine.ingest.report import IngestReport, QuarantinedInput
from dataengine.ingest.sources import VideoSource, recording_info, resolve_input, source_sha256
from dataengine.lineage import repository

QUARANTINE_STAGE = "ingest"
_Show = Callable[[str | None], None]


def quarantine_key(video_id: str) -> str:
    """The key of the record that says why a video was refused."""
    return f"quarantine/{video_id}.json"


@dataclass(frozen=True, slots=True)
class _Params:
    clip_seconds: float
    sample_fps: float
    jpeg_quality: int
    max_resolution: int


@dataclass(frozen=True, slots=True)
class _Identity:
    """A readable input: where it is, its hash, and what its path says."""

    source: VideoSource
    sha256: str
    camera: str | None
    recorded_at: datetime | None

    @property
    def video_id(self) -> str:
        return video_id_for(self.sha256)


def ingest(
    ctx: Context,
    inputs: Sequence[str] | None = None,
    *,
    clip_seconds: float | None = None,
    sample_fps: float | None = None,
    progress: bool = False,
) -> IngestReport:
    """Ingest ``inputs`` (store keys, store URIs or local paths), or every new landing video when None.

    Rerunning over the same inputs adds no rows or objects: ingested videos are skipped, and clips
    whose ``meta.json`` and lineage row exist are kept as they are.
    """
    settings = ctx.settings
    params = _Params(
        clip_seconds=settings.clip_seconds if clip_seconds is None else clip_seconds,
        sample_fps=settings.sample_fps if sample_fps is None else sample_fps,
        jpeg_quality=settings.jpeg_quality,
        max_resolution=settings.max_resolution,
    )
    if params.clip_seconds <= 0 or params.sample_fps < 0:
        raise ConfigError(
            "ingest needs clip_seconds > 0 and sample_fps >= 0, "
            f"got {params.clip_seconds} and {params.sample_fps}"
        )
    todo = discover_with_hashes(ctx) if inputs is None else [(raw, None) for raw in inputs]
    report = IngestReport()
    with _progress_bar(enabled=progress, total=len(todo)) as show:
        for raw, sha256 in todo:
            show(raw)
            _ingest_input(ctx, raw, sha256=sha256, params=params, report=report)
        show(None)
    return report


def _ingest_input(
    ctx: Context, raw: str, *, sha256: str | None, params: _Params, report: IngestReport
) -> None:
    try:
        source = resolve_input(ctx.store, raw)
    except InputRejectedError as exc:
        _quarantine(ctx, report, input_name=raw, reason=exc.reason, identity=None)
        return
    camera, recorded_at = recording_info(source, landing_prefix=ctx.settings.landing_prefix)
    identity = _Identity(source, sha256 or source_sha256(ctx.store, source), camera, recorded_at)
    with ctx.db.session() as session:
        video = repository.get_video(session, identity.video_id)
        if video is not None and video.status == "ingested":
            report.skipped_videos.append(identity.video_id)
            return
        _register_video(session, identity, status="ingesting")
    try:
        facts, duration = _cut_video(ctx, identity, params=params, report=report)
    except InputRejectedError as exc:
        _quarantine(ctx, report, input_name=source.uri, reason=exc.reason, identity=identity)
        return
    with ctx.db.session() as session:
        _register_video(session, identity, status="ingested", facts=facts, duration=duration)
    report.videos.append(identity.video_id)


def _register_video(
    session: Session,
    identity: _Identity,
    *,
    status: str,
    facts: VideoFacts | None = None,
    duration: float | None = None,
    error: str | None = None,
) -> None:
    repository.register_video(
        session,
        video_id=identity.video_id,
        uri=identity.source.uri,
        sha256=identity.sha256,
        status=status,
        camera=identity.camera,
        recorded_at=identity.recorded_at,
        duration=duration,
        fps=None if facts is None else facts.fps,
        width=None if facts is None else facts.width,
        height=None if facts is None else facts.height,
        error=error,
    )


def _cut_video(
    ctx: Context, identity: _Identity, *, params: _Params, report: IngestReport
) -> tuple[VideoFacts, float]:
    """Decode and clip one video; returns its facts and its duration in seconds."""
    name = identity.source.uri
    with identity.source.local_file(ctx.store) as path:
        sniff(path, name=name)
        with open_video(path, name=name) as container:
            info = probe(container, name=name, max_resolution=params.max_resolution)
            facts = VideoFacts(
                video_id=identity.video_id,
                source_uri=identity.source.uri,
                fps=info.fps,
                width=info.width,
                height=info.height,
                camera=identity.camera,
                recorded_at=identity.recorded_at,
                start_time=info.start_time,
            )
            with tempfile.TemporaryDirectory(prefix="dataengine-ingest-") as workdir:
                cutter = _Cutter(ctx, facts, params=params, report=report, workdir=Path(workdir))
                try:
                    for decoded in decode_frames(container, info, name=name):
                        cutter.push(decoded)
                    cutter.close()
                finally:
                    cutter.abort()
    return facts, cutter.duration


class _Cutter:
    """Routes decoded frames into clips: a new :class:`ClipWriter` per clip, none for written clips."""

    def __init__(
        self, ctx: Context, facts: VideoFacts, *, params: _Params, report: IngestReport, workdir: Path
    ) -> None:
        self.ctx, self.facts, self.params, self.report, self.workdir = ctx, facts, params, report, workdir
        self.clip_len = clip_length(fps=facts.fps, clip_seconds=params.clip_seconds)
        self.step = sample_step(fps=facts.fps, sample_fps=params.sample_fps)
        self.start_frame: int | None = None
        self.writer: ClipWriter | None = None
        self.n_frames = 0
        self.first_time = self.last_time = 0.0

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        return self.last_time + 1.0 / self.facts.fps - self.first_time if self.n_frames else 0.0

    def push(self, decoded: DecodedFrame) -> None:
        start = decoded.index - decoded.index % self.clip_len
        if start != self.start_frame:
            self.close()
            self._begin(start)
        if self.writer is not None:
            self.writer.add(decoded)
        if self.n_frames == 0:
            self.first_time = decoded.time
        self.n_frames += 1
        self.last_time = decoded.time

    def _begin(self, start_frame: int) -> None:
        self.start_frame = start_frame
        if clip_is_written(self.ctx.store, clip_id_for(self.facts.video_id, start_frame)):
            return  # Complete from an earlier run: only (re)register it at close().
        self.writer = ClipWriter(
            store=self.ctx.store,
            video=self.facts,
            start_frame=start_frame,
            step=self.step,
            jpeg_quality=self.params.jpeg_quality,
            workdir=self.workdir,
        )

    def close(self) -> None:
        """Finish the current clip (if any) and register it."""
        if self.start_frame is None:
            return
        if self.writer is not None:
            meta = self.writer.finish()
            self.writer = None
        else:
            meta = read_meta(self.ctx.store, clip_id_for(self.facts.video_id, self.start_frame))
        self._register(meta)
        self.start_frame = None

    def abort(self) -> None:
        """Drop a clip left half-written by an error."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _register(self, meta: ClipMeta) -> None:
        ctx = self.ctx
        with ctx.db.session() as session:
            _, created = repository.register_clip(
                session,
                clip_id=meta.clip_id,
                video_id=meta.video_id,
                start_frame=meta.start_frame,
                end_frame=meta.end_frame,
                start_time=meta.start_time,
                n_frames=meta.n_frames,
                uri=ctx.store.uri(clip_prefix(meta.clip_id)),
                run_id=ctx.run_id,
                actor=ctx.actor,
                details={
                    "n_sampled": len(meta.sampled),
                    "sample_step": self.step,
                    "encoding": meta.encoding,
                    "source_uri": meta.source_uri,
                },
            )
        (self.report.clips if created else self.report.existing_clips).append(meta.clip_id)


def _quarantine(
    ctx: Context, report: IngestReport, *, input_name: str, reason: str, identity: _Identity | None
) -> None:
    """Record a refused input: ``quarantine/{video_id}.json``, the video row, the quarantine row."""
    video_id = None if identity is None else identity.video_id
    with ctx.db.session() as session:
        if identity is not None:
            ctx.store.write_json(
                quarantine_key(identity.video_id),
                {"input": input_name, "video_id": video_id, "reason": reason, "at": utc_now_iso()},
            )
            _register_video(session, identity, status="quarantined", error=reason)
            for clip in repository.list_clips(session, video_id=identity.video_id):
                if clip.stage != "quarantined":
                    repository.quarantine(
                        session,
                        kind="clip",
                        input=clip.uri,
                        reason=reason,
                        stage=QUARANTINE_STAGE,
                        video_id=video_id,
                        clip_id=clip.id,
                        run_id=ctx.run_id,
                    )
        repository.quarantine(
            session,
            kind="video",
            input=input_name,
            reason=reason,
            stage=QUARANTINE_STAGE,
            video_id=video_id,
            run_id=ctx.run_id,
        )
    if video_id is not None:
        report.clips = [c for c in report.clips if not c.startswith(f"{video_id}-")]
    report.quarantined.append(QuarantinedInput(input=input_name, video_id=video_id, reason=reason))


@contextmanager
def _progress_bar(*, enabled: bool, total: int) -> Iterator[_Show]:
    """A rich progress bar over the inputs when ``enabled``; ``show(name)`` starts the next input."""
    if not enabled:
        yield lambda _name: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task("ingest", total=total)
        started = False

        def show(name: str | None) -> None:
            nonlocal started
            if started:
                bar.advance(task)
            started = True
            if name is not None:
                bar.update(task, description=f"ingest {name.rsplit('/', 1)[-1]}")

        yield show
