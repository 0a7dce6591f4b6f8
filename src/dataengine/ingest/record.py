"""Lineage and quarantine records of ingest: clips, dropped duplicates, damaged stretches, refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dataengine.clips import ClipMeta, clip_prefix, video_id_for
from dataengine.context import Context
from dataengine.formats import utc_now_iso
from dataengine.ingest.clipper import VideoFacts, complete_meta
from dataengine.ingest.cutter import Gap
from dataengine.ingest.index import FrameIndex
from dataengine.ingest.report import IngestReport, QuarantinedInput
from dataengine.ingest.sources import VideoSource
from dataengine.lineage import Session, videos
from dataengine.lineage.clips import clip_events, get_clip, list_clips, record_event, register_clip, set_stage
from dataengine.lineage.quarantine import quarantine

QUARANTINE_STAGE = "ingest"


def quarantine_key(video_id: str) -> str:
    """The key of the record that says why a video was refused (or which of its stretches were)."""
    return f"quarantine/{video_id}.json"


@dataclass(frozen=True, slots=True)
class Identity:
    """A readable input: where it is, its hash, and what its path says."""

    source: VideoSource
    sha256: str
    camera: str | None
    recorded_at: datetime | None

    @property
    def video_id(self) -> str:
        return video_id_for(self.sha256)


def register_video(
    session: Session,
    identity: Identity,
    *,
    status: str,
    facts: VideoFacts | None = None,
    duration: float | None = None,
    error: str | None = None,
) -> None:
    """Insert or update the video's row."""
    videos.register_video(
        session,
        video_id=identity.video_id,
        uri=identity.source.uri,
        sha256=identity.sha256,
        status=status,
        camera=identity.camera if facts is None else facts.camera,
        recorded_at=identity.recorded_at if facts is None else facts.recorded_at,
        duration=duration,
        fps=None if facts is None else facts.fps,
        width=None if facts is None else facts.width,
        height=None if facts is None else facts.height,
        error=error,
    )


class LineageRecorder:
    """Registers each kept clip (one transaction per clip) and each dropped duplicate."""

    def __init__(self, ctx: Context, report: IngestReport, *, base_details: dict[str, Any]) -> None:
        self.ctx, self.report, self.base_details = ctx, report, base_details

    def clip(self, meta: ClipMeta, details: dict[str, Any], *, written: bool) -> None:
        """Register a complete clip; ``written`` says whether this run wrote (or rewrote) its objects."""
        ctx = self.ctx
        with ctx.db.session() as session:
            _, created = register_clip(
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
                    **self.base_details,
                    "n_sampled": len(meta.sampled),
                    "encoding": meta.encoding,
                    "source_uri": meta.source_uri,
                    **details,
                },
            )
            if written and not created:
                _note_repair(ctx, session, meta.clip_id)
        if created:
            self.report.clips.append(meta.clip_id)
        else:
            (self.report.repaired_clips if written else self.report.existing_clips).append(meta.clip_id)

    def duplicate(self, kept: str, details: dict[str, Any]) -> None:
        """Note on the kept clip that a near-identical next clip was dropped (once, however many runs)."""
        with self.ctx.db.session() as session:
            events = clip_events(session, kept)
            if not any(e.details.get("clip_id") == details["clip_id"] for e in events):
                record_event(
                    session,
                    kept,
                    "ingested",
                    status="skipped",
                    run_id=self.ctx.run_id,
                    actor=self.ctx.actor,
                    details=details,
                )
        self.report.dropped_duplicates.append(str(details["clip_id"]))


def _note_repair(ctx: Context, session: Session, clip_id: str) -> None:
    """A registered clip whose objects were rebuilt: an event says so, and a clip quarantined because
    they were missing goes back to ``ingested``."""
    clip = get_clip(session, clip_id)
    details = {"decision": "repaired", "reason": "objects were missing; rebuilt from the source"}
    if clip.stage == "quarantined":
        set_stage(session, clip_id, "ingested", run_id=ctx.run_id, actor=ctx.actor, details=details)
    else:
        record_event(
            session,
            clip_id,
            "ingested",
            status="repaired",
            run_id=ctx.run_id,
            actor=ctx.actor,
            details=details,
        )


def incomplete_clips(ctx: Context, video_id: str) -> set[str]:
    """The registered clips of a video whose objects are not all there (see ``clipper.complete_meta``)."""
    with ctx.db.session() as session:
        clip_ids = [clip.id for clip in list_clips(session, video_id=video_id)]
    return {clip_id for clip_id in clip_ids if complete_meta(ctx.store, clip_id) is None}


def recorded_ingest_details(ctx: Context, video_id: str) -> dict[str, Any]:
    """The details of the ``ingested`` event of the video's first clip: the parameters it was cut with."""
    with ctx.db.session() as session:
        clips = list_clips(session, video_id=video_id)
        for event in clip_events(session, clips[0].id) if clips else []:
            if event.stage == "ingested" and event.status == "ok":
                return dict(event.details)
    return {}


def quarantine_unrepaired(ctx: Context, report: IngestReport, identity: Identity, clip_ids: set[str]) -> None:
    """Quarantine the clips a repair could not rebuild (the source no longer gives the same clips)."""
    for clip_id in sorted(clip_ids):
        if complete_meta(ctx.store, clip_id) is not None:
            continue
        uri = ctx.store.uri(clip_prefix(clip_id))
        reason = (
            f"{uri} is missing objects and {identity.source.uri} no longer yields this clip "
            "with the recorded clip_seconds and sample_fps"
        )
        with ctx.db.session() as session:
            quarantine(
                session,
                kind="clip",
                input=uri,
                reason=reason,
                stage=QUARANTINE_STAGE,
                video_id=identity.video_id,
                clip_id=clip_id,
                run_id=ctx.run_id,
            )
        report.quarantined.append(QuarantinedInput(input=uri, video_id=identity.video_id, reason=reason))


def describe_gaps(name: str, gaps: list[Gap], index: FrameIndex, errors: list[str]) -> str:
    """One sentence naming the input and each damaged stretch, with the decoder's first complaint."""
    stretches = "; ".join(
        f"frames {g.start_frame}-{g.end_frame - 1} ({index.times[g.start_frame]:.3f}-"
        f"{index.end_time(g.end_frame - 1):.3f} s)"
        + (f", dropped clips {', '.join(g.dropped)}" if g.dropped else "")
        for g in gaps
    )
    cause = f": {errors[0]}" if errors else ""
    return f"{name} is corrupt in {stretches}{cause}"


def record_gaps(ctx: Context, identity: Identity, gaps: list[Gap], index: FrameIndex, reason: str) -> None:
    """The damaged stretches of a video whose clean clips were kept: a quarantine row per stretch."""
    uri = identity.source.uri
    ctx.store.write_json(
        quarantine_key(identity.video_id),
        {
            "input": uri,
            "video_id": identity.video_id,
            "reason": reason,
            "gaps": [
                {
                    "start_frame": g.start_frame,
                    "end_frame": g.end_frame,
                    "start_time": round(float(index.times[g.start_frame]), 6),
                    "end_time": round(index.end_time(g.end_frame - 1), 6),
                    "dropped_clips": g.dropped,
                }
                for g in gaps
            ],
            "at": utc_now_iso(),
        },
    )
    with ctx.db.session() as session:
        for g in gaps:
            quarantine(
                session,
                kind="gap",
                input=f"{uri}#frames={g.start_frame}-{g.end_frame - 1}",
                reason=reason,
                stage=QUARANTINE_STAGE,
                video_id=identity.video_id,
                run_id=ctx.run_id,
            )


def quarantine_input(
    ctx: Context, report: IngestReport, *, input_name: str, reason: str, identity: Identity | None
) -> None:
    """Record a refused input: ``quarantine/{video_id}.json``, the video row, the quarantine row."""
    video_id = None if identity is None else identity.video_id
    with ctx.db.session() as session:
        if identity is not None:
            ctx.store.write_json(
                quarantine_key(identity.video_id),
                {"input": input_name, "video_id": video_id, "reason": reason, "at": utc_now_iso()},
            )
            register_video(session, identity, status="quarantined", error=reason)
            for clip in list_clips(session, video_id=identity.video_id):
                if clip.stage != "quarantined":
                    quarantine(
                        session,
                        kind="clip",
                        input=clip.uri,
                        reason=reason,
                        stage=QUARANTINE_STAGE,
                        video_id=video_id,
                        clip_id=clip.id,
                        run_id=ctx.run_id,
                    )
        quarantine(
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
