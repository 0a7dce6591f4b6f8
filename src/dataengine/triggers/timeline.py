"""``dataengine triggers timeline``: each trigger's score along a video, with the selected clips marked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dataengine.errors import NotFoundError
from dataengine.lineage import Session
from dataengine.lineage.clips import clips_ever_in_stage, list_clips
from dataengine.lineage.videos import get_video
from dataengine.triggers.run import stored_scores


@dataclass
class Timeline:
    """Per clip of one video: its time span (seconds), its newest trigger scores, and whether it was
    selected."""

    video_id: str
    clip_ids: list[str] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    selected: list[bool] = field(default_factory=list)


def build_timeline(session: Session, video_id: str) -> Timeline:
    """The timeline of ``video_id``; a video with no clips is a :class:`NotFoundError`."""
    clips = list_clips(session, video_id=video_id)
    if not clips:
        raise NotFoundError(
            f"no clips of video {video_id} in the lineage database; see `dataengine clips list`"
        )
    video = get_video(session, video_id)
    fps = video.fps if video is not None and video.fps else None
    chosen = clips_ever_in_stage(session, [c.id for c in clips], "selected")
    timeline = Timeline(video_id)
    per_clip = [stored_scores(session, c.id) for c in clips]
    names = sorted({name for scores in per_clip for name in scores})
    timeline.scores = {name: [] for name in names}
    for clip, scores in zip(clips, per_clip, strict=True):
        timeline.clip_ids.append(clip.id)
        timeline.starts.append(float(clip.start_time))
        length = (clip.end_frame - clip.start_frame) / fps if fps else 1.0
        timeline.ends.append(float(clip.start_time) + length)
        timeline.selected.append(clip.id in chosen)
        for name in names:
            timeline.scores[name].append(scores.get(name))
    return timeline


def plot_timeline(timeline: Timeline, out: Path) -> Path:
    """Draw one line per trigger over clip mid-times and shade the selected clips; writes ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the CLI and workers are headless
    import matplotlib.pyplot as plt

    mids = [(a + b) / 2 for a, b in zip(timeline.starts, timeline.ends, strict=True)]
    fig, ax = plt.subplots(figsize=(max(6.0, min(24.0, len(mids) * 0.4)), 4.0))
    try:
        for name, values in timeline.scores.items():
            points = [(t, v) for t, v in zip(mids, values, strict=True) if v is not None]
            ax.plot([t for t, _ in points], [v for _, v in points], marker=".", label=name)
        for start, end, chosen in zip(timeline.starts, timeline.ends, timeline.selected, strict=True):
            if chosen:
                ax.axvspan(start, end, color="tab:red", alpha=0.15)
        ax.set(xlabel="time in video (s)", ylabel="trigger score", ylim=(-0.02, 1.02))
        ax.set_title(f"video {timeline.video_id}: trigger scores; shaded = selected")
        ax.legend(loc="upper right", fontsize="small", ncol=2)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
