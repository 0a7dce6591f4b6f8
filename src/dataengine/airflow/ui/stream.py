"""The predictions stream: the newest scored and autolabelled clips, each with what the model saw."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from dataengine.airflow.ui.clipview import frame_with_boxes, stream_card
from dataengine.airflow.ui.pages import Links, layout
from dataengine.airflow.ui.static import STREAM_JS
from dataengine.clips import frame_name, read_meta
from dataengine.context import Context
from dataengine.errors import DataEngineError
from dataengine.formats import load_annotations
from dataengine.lineage.views import pages as queries

STREAM_SIZE = 24
POLL_MS = 3000


def _thumbnail(ctx: Context, links: Links, event: dict[str, Any]) -> str:
    """The autolabel's busiest frame with its boxes, or the middle sampled frame of a scored clip."""
    clip_id, version = event["clip_id"], event["details"].get("version")
    try:
        if event["stage"] == "autolabelled" and isinstance(version, int):
            annotations = load_annotations(ctx.store, clip_id, version)
            if annotations.frames:
                best = max(annotations.frames, key=lambda f: (len(f.boxes), -f.index))
                boxes = [[*b.xyxy, b.label, b.origin, b.score] for b in best.boxes]
                size = {"image": best.image, "width": best.width, "height": best.height}
                return frame_with_boxes(links, clip_id, size, boxes)
        meta = read_meta(ctx.store, clip_id)
        if meta.sampled:
            index = meta.sampled[len(meta.sampled) // 2]
            size = {"image": frame_name(index), "width": meta.width, "height": meta.height}
            return frame_with_boxes(links, clip_id, size, [])
    except DataEngineError as exc:
        return f'<p class="err">{escape(str(exc))[:200]}</p>'
    return '<p class="muted">no frames</p>'


@dataclass
class StreamView:
    """The newest events, their cards, the last event id, and the whole page."""

    events: list[dict[str, Any]]
    cards: str
    last_id: int
    page: str


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
    cards = "".join(stream_card(links, event, _thumbnail(ctx, links, event)) for event in events)
    last_id = max((e.id for e in rows), default=after or 0)
    body = (
        f"<p>The newest scored and autolabelled clips; refreshes every {POLL_MS // 1000} s. "
        f'<span id="stream-status" class="muted"></span></p>'
        f'<div id="cards" class="cards" data-last="{last_id}" data-interval="{POLL_MS}" '
        f'data-api="{links.app("/api/stream")}">{cards or ""}</div>'
    )
    return StreamView(events, cards, last_id, layout(links, "stream", "Predictions stream", body, STREAM_JS))
