"""The predictions stream: the newest scored and autolabelled clips, each with what the model saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from dataengine.airflow.ui.pages import Links, page
from dataengine.airflow.ui.render import render
from dataengine.clips import frame_name, read_meta
from dataengine.context import Context
from dataengine.errors import DataEngineError
from dataengine.formats import load_annotations
from dataengine.lineage.views import pages as queries

STREAM_SIZE = 24
POLL_MS = 3000


@dataclass(frozen=True)
class Thumbnail:
    """The frame a card shows with its boxes (xyxy, label, origin, score), or why there is none."""

    clip_id: str
    image: str = ""
    width: int = 0
    height: int = 0
    boxes: list[list[Any]] = field(default_factory=list)
    error: str = ""


def _thumbnail(ctx: Context, event: dict[str, Any]) -> Thumbnail:
    """The autolabel's busiest frame with its boxes, or the middle sampled frame of a scored clip."""
    clip_id, version = event["clip_id"], event["details"].get("version")
    try:
        if event["stage"] == "autolabelled" and isinstance(version, int):
            annotations = load_annotations(ctx.store, clip_id, version)
            if annotations.frames:
                best = max(annotations.frames, key=lambda f: (len(f.boxes), -f.index))
                boxes = [[*b.xyxy, b.label, b.origin, b.score] for b in best.boxes]
                return Thumbnail(clip_id, best.image, best.width, best.height, boxes)
        meta = read_meta(ctx.store, clip_id)
        if meta.sampled:
            middle = frame_name(meta.sampled[len(meta.sampled) // 2])
            return Thumbnail(clip_id, middle, meta.width, meta.height)
    except DataEngineError as exc:
        return Thumbnail(clip_id, error=str(exc)[:200])
    return Thumbnail(clip_id)


@dataclass
class StreamView:
    """The newest events, their cards, the last event id, and the whole page."""

    events: list[dict[str, Any]]
    cards: Markup
    last_id: int
    page: Markup


def stream_html(ctx: Context, links: Links, *, after: int | None) -> StreamView:
    """The newest events (after event id ``after``) as cards, the whole page, and the last event id."""
    with ctx.db.session() as session:
        rows = queries.stream_events(session, after=after, limit=STREAM_SIZE)
    events = [
        {
            "id": e.id,
            "clip_id": e.clip_id,
            "stage": e.stage,
            "at": e.at.isoformat(),
            "run_id": e.run_id,
            "details": e.details,
        }
        for e in rows
    ]
    cards = render(
        "cards.html", links=links, cards=[{"event": e, "thumb": _thumbnail(ctx, e)} for e in events]
    )
    last_id = max((e.id for e in rows), default=after or 0)
    whole = page(
        "stream.html", links, "stream", "Predictions stream", cards=cards, last_id=last_id, poll_ms=POLL_MS
    )
    return StreamView(events, cards, last_id, whole)
