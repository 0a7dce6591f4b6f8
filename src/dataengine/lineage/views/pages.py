"""The UI's read queries (funnel, clip and video lists, timelines, models): each indexed or bounded."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage.models import (
    CLIP_STAGES,
    Clip,
    ClipEvent,
    Model,
    QuarantineItem,
    TriggerScore,
    Video,
)
from dataengine.lineage.review_totals import model_review_totals

#: The loop's stages as the funnel shows them (the side exits are counted, not drawn as steps).
FUNNEL_STAGES = CLIP_STAGES[:7]
STREAM_STAGES = ("scored", "autolabelled")


def stage_counts(session: Session) -> dict[str, int]:
    """Clips per current stage (uses the index on ``clips.stage``)."""
    counts = dict.fromkeys(CLIP_STAGES, 0)
    for stage, count in session.execute(select(Clip.stage, func.count()).group_by(Clip.stage)):
        counts[stage] = int(count)
    return counts


def latest_quarantine(session: Session, limit: int = 20) -> list[QuarantineItem]:
    """The most recently refused inputs, newest first."""
    return list(session.scalars(select(QuarantineItem).order_by(QuarantineItem.id.desc()).limit(limit)))


def clips_page(
    session: Session, *, stage: str | None, video_id: str | None, after: str | None, limit: int
) -> list[Clip]:
    """One page of clips ordered by id, starting after clip id ``after`` (keyset pagination)."""
    query = select(Clip).order_by(Clip.id).limit(limit)
    if stage:
        query = query.where(Clip.stage == stage)
    if video_id:
        query = query.where(Clip.video_id == video_id)
    if after:
        query = query.where(Clip.id > after)
    return list(session.scalars(query))


def videos_page(session: Session, *, after: str | None, limit: int) -> list[tuple[Video, int]]:
    """One page of videos ordered by id with their number of clips."""
    query = select(Video).order_by(Video.id).limit(limit)
    if after:
        query = query.where(Video.id > after)
    videos = list(session.scalars(query))
    counts: dict[str, int] = {}
    if videos:
        rows = session.execute(
            select(Clip.video_id, func.count())
            .where(Clip.video_id.in_([v.id for v in videos]))
            .group_by(Clip.video_id)
        )
        counts = {video_id: int(n) for video_id, n in rows}
    return [(video, counts.get(video.id, 0)) for video in videos]


@dataclass
class Timeline:
    """A video's clips along time, every trigger's score per clip, and the selection under the budget."""

    video: Video
    clips: list[Clip]
    #: trigger -> clip id -> score
    scores: dict[str, dict[str, float]]
    selected: set[str]
    #: selection run id -> (lowest selected score, budget k, candidates)
    budgets: dict[str, tuple[float | None, int, int]]


def _selection_events(session: Session, clip_ids: list[str]) -> list[ClipEvent]:
    return list(
        session.scalars(
            select(ClipEvent)
            .where(ClipEvent.clip_id.in_(clip_ids), ClipEvent.stage.in_(("selected", "rejected")))
            .order_by(ClipEvent.id)
        )
    )


def _budget_lines(session: Session, events: list[ClipEvent]) -> dict[str, tuple[float | None, int, int]]:
    """Per selection run: the score of the last clip the budget let in (the line), k and candidates."""
    runs: dict[str, tuple[int, int]] = {}
    for event in events:
        if event.run_id and "budget" in event.details:
            runs[event.run_id] = (int(event.details["budget"]), int(event.details.get("candidates", 0)))
    if not runs:
        return {}
    # The run's lowest selected clip marks the line; it may belong to another video.
    score = ClipEvent.details["score"].as_float()
    rows = session.execute(
        select(ClipEvent.run_id, func.min(score))
        .where(ClipEvent.stage == "selected", ClipEvent.run_id.in_(list(runs)))
        .group_by(ClipEvent.run_id)
    )
    lowest = {run_id: (float(value) if value is not None else None) for run_id, value in rows}
    return {run_id: (lowest.get(run_id), k, n) for run_id, (k, n) in runs.items()}


def video_timeline(session: Session, video_id: str) -> Timeline | None:
    """The trigger timeline of one video; None when the video is unknown."""
    video = session.get(Video, video_id)
    if video is None:
        return None
    clips = list(session.scalars(select(Clip).where(Clip.video_id == video_id).order_by(Clip.start_frame)))
    clip_ids = [clip.id for clip in clips]
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    if clip_ids:
        rows = session.execute(
            select(TriggerScore.trigger, TriggerScore.clip_id, TriggerScore.score)
            .where(TriggerScore.clip_id.in_(clip_ids))
            .order_by(TriggerScore.created_at, TriggerScore.id)
        )
        for trigger, clip_id, value in rows:
            scores[trigger][clip_id] = float(value)
    events = _selection_events(session, clip_ids) if clip_ids else []
    latest: dict[str, str] = {}
    for event in events:
        latest[event.clip_id] = event.stage
    selected = {clip_id for clip_id, stage in latest.items() if stage == "selected"}
    return Timeline(video, clips, dict(scores), selected, _budget_lines(session, events))


def stream_events(session: Session, *, after: int | None, limit: int) -> list[ClipEvent]:
    """The newest scoring and autolabelling events, newest first; only those after event id ``after``."""
    query = (
        select(ClipEvent)
        .where(ClipEvent.stage.in_(STREAM_STAGES), ClipEvent.status == "ok")
        .order_by(ClipEvent.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(ClipEvent.id > after)
    return list(session.scalars(query))


@dataclass
class ModelRow:
    """A model with what the page shows about it."""

    model: Model
    reviews: int = 0
    boxes_changed: int = 0
    boxes_proposed: int = 0

    @property
    def edit_rate(self) -> float | None:
        """Boxes reviewers changed per box the model proposed; None before any review."""
        return self.boxes_changed / self.boxes_proposed if self.boxes_proposed else None


def models_overview(session: Session) -> list[ModelRow]:
    """Every model, oldest first, with the review edit rate of the autolabels it produced (the totals
    the review writes keep per model, ``lineage.review_totals``: one row a model, not every review)."""
    models = list(session.scalars(select(Model).order_by(Model.created_at, Model.id)))
    rows = {model.id: ModelRow(model) for model in models}
    for model_id, (reviews, changed, proposed) in model_review_totals(session.connection()).items():
        row = rows.get(model_id)
        if row is not None:
            row.reviews, row.boxes_changed, row.boxes_proposed = reviews, changed, proposed
    return list(rows.values())
