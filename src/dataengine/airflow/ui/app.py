"""The monitoring app that the Airflow plugin mounts at ``/dataengine``: routes and their inputs.

Every route needs the dependencies given to :func:`create_app`; the plugin passes Airflow's own
authentication, because the endpoints of a plugin's app are not protected automatically.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse

from dataengine.airflow.ui import pages
from dataengine.airflow.ui.charts import timeline_svg
from dataengine.airflow.ui.clipview import ClipView, clip_page, default_panels
from dataengine.airflow.ui.modelpage import models_page
from dataengine.airflow.ui.render import render
from dataengine.airflow.ui.stream import stream_html
from dataengine.clips import frame_key, read_meta
from dataengine.context import Context
from dataengine.errors import DataEngineError, NotFoundError, ObjectNotFoundError
from dataengine.lineage import CLIP_STAGES
from dataengine.lineage.views import pages as queries
from dataengine.lineage.views.funnel import funnel_days

CLIP_ID = re.compile(r"[0-9a-f]{16}-[0-9]{7}")
VIDEO_ID = re.compile(r"[0-9a-f]{16}")
FRAME_NAME = re.compile(r"[0-9]{6}\.jpg")
PAGE_SIZE = 50
#: Frames never change once written (ARCHITECTURE §3), so browsers may keep them.
FRAME_CACHE_CONTROL = "private, max-age=31536000, immutable"


def checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    """``value`` if it is a well-formed id; 400 otherwise (nothing else ever reaches storage)."""
    if not pattern.fullmatch(value):
        raise HTTPException(status_code=400, detail=f"not a valid {what}: {value[:80]!r}")
    return value


class FrameCache:
    """The most recently served frames in memory, so scrubbing does not go back to S3 each time."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[str], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = load(key)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._size += len(data)
            while self._size > self.max_bytes and self._items:
                self._size -= len(self._items.popitem(last=False)[1])
        return data


class _Contexts:
    """One context per app, opened on first use (never at import: Airflow imports plugins often)."""

    def __init__(self, factory: Callable[[], Context]) -> None:
        self._factory = factory
        self._ctx: Context | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Context:
        with self._lock:
            if self._ctx is None:
                self._ctx = self._factory()
            return self._ctx


def _links(request: Request) -> pages.Links:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    return pages.Links(base=base, airflow=base.rsplit("/", 1)[0] if base else "")


LinksDep = Annotated[pages.Links, Depends(_links)]


def _context(request: Request) -> Context:
    contexts: _Contexts = request.app.state.contexts
    return contexts()


CtxDep = Annotated[Context, Depends(_context)]
router = APIRouter()


def create_app(
    *, dependencies: list[Any] | None = None, context_factory: Callable[[], Context] | None = None
) -> FastAPI:
    """The app; ``dependencies`` guard every route (the plugin passes Airflow's authentication)."""
    app = FastAPI(title="dataengine monitoring", dependencies=dependencies or [])
    # A server never migrates the database it serves: `dataengine init` (or airflow-init) does.
    app.state.contexts = _Contexts(
        context_factory or (lambda: Context.create(run_id="ui/airflow", actor="airflow-ui", migrate=False))
    )
    app.state.frames = FrameCache()
    app.include_router(router)
    app.add_exception_handler(DataEngineError, _unavailable)
    return app


def _unavailable(_request: Request, exc: Exception) -> Response:
    """An error of the engine (an unmigrated or unreachable database) as a 503 page that says so."""
    return HTMLResponse(render("unavailable.html", error=str(exc)), status_code=503)


@router.get("/", response_class=HTMLResponse)
def funnel(
    request: Request,
    ctx: CtxDep,
    links: LinksDep,
    until: date | None = None,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
) -> str:
    from dataengine.lineage.views.reports import status_summary

    today = datetime.now(UTC).date()
    until = min(until or today, today)
    with ctx.db.session() as session:
        summary = status_summary(session)
        rows = funnel_days(session, until=until, days=days)
        quarantine = queries.latest_quarantine(session)
    newer = until + timedelta(days=days)
    return pages.funnel_page(
        links,
        summary,
        quarantine,
        rows,
        until.isoformat(),
        days,
        (until - timedelta(days=days)).isoformat(),
        min(newer, today).isoformat() if until < today else None,
    )


@router.get("/clips", response_class=HTMLResponse)
def clips(
    ctx: CtxDep,
    links: LinksDep,
    stage: str | None = None,
    video: str | None = None,
    after: str | None = None,
) -> str:
    if stage and stage not in CLIP_STAGES:
        raise HTTPException(status_code=400, detail=f"no clip stage {stage!r}")
    video = checked(VIDEO_ID, video, "video id") if video else None
    after = checked(CLIP_ID, after, "clip id") if after else None
    with ctx.db.session() as session:
        rows = queries.clips_page(session, stage=stage, video_id=video, after=after, limit=PAGE_SIZE)
    return pages.clips_page(links, rows, stage=stage, video_id=video, limit=PAGE_SIZE)


@router.get("/videos", response_class=HTMLResponse)
def videos(ctx: CtxDep, links: LinksDep, after: str | None = None) -> str:
    after = checked(VIDEO_ID, after, "video id") if after else None
    with ctx.db.session() as session:
        rows = queries.videos_page(session, after=after, limit=PAGE_SIZE)
    return pages.videos_page(links, rows, PAGE_SIZE)


@router.get("/videos/{video_id}", response_class=HTMLResponse)
def timeline(video_id: str, ctx: CtxDep, links: LinksDep) -> str:
    checked(VIDEO_ID, video_id, "video id")
    with ctx.db.session() as session:
        found = queries.video_timeline(session, video_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no video {video_id!r} in the lineage database")
    selected = [c for c in found.clips if c.id in found.selected]
    chart = timeline_svg(found, links.clip)
    title = f"Trigger timeline of video {video_id}"
    return pages.page(
        "timeline.html", links, "videos", title, clips=found.clips, selected=selected, chart=chart
    )


@router.get("/stream", response_class=HTMLResponse)
def stream(ctx: CtxDep, links: LinksDep) -> str:
    return stream_html(ctx, links, after=None).page


@router.get("/models", response_class=HTMLResponse)
def models(ctx: CtxDep, links: LinksDep) -> str:
    with ctx.db.session() as session:
        rows = queries.models_overview(session)
    return models_page(links, rows)


def _clip_view(ctx: Context, clip_id: str, a: int | None, b: int | None) -> ClipView:
    from dataengine.formats import load_annotations
    from dataengine.lineage.views.reports import clip_history

    try:
        with ctx.db.session() as session:
            history = clip_history(session, clip_id)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    known = {entry["version"] for entry in history["annotations"]}
    panels = [v for v in (a, b) if v is not None and v in known] or default_panels(history["annotations"])
    view = ClipView(history=history, meta=None, panels=list(dict.fromkeys(panels)))
    try:
        view.meta = read_meta(ctx.store, clip_id)
    except DataEngineError as exc:
        view.errors.append(f"frames unavailable: {exc}")
    for version in view.panels:
        try:
            view.annotations[version] = load_annotations(ctx.store, clip_id, version)
        except DataEngineError as exc:
            view.errors.append(f"annotation v{version} unreadable: {exc}")
    return view


@router.get("/clips/{clip_id}", response_class=HTMLResponse)
def clip(clip_id: str, ctx: CtxDep, links: LinksDep, a: int | None = None, b: int | None = None) -> str:
    return clip_page(links, _clip_view(ctx, checked(CLIP_ID, clip_id, "clip id"), a, b))


@router.get("/clips/{clip_id}/frames/{name}")
def frame(clip_id: str, name: str, request: Request, ctx: CtxDep) -> Response:
    checked(CLIP_ID, clip_id, "clip id")
    checked(FRAME_NAME, name, "frame file name")
    key = frame_key(clip_id, int(name.removesuffix(".jpg")))
    try:
        frames: FrameCache = request.app.state.frames
        data = frames.get(key, ctx.store.read_bytes)
    except ObjectNotFoundError as exc:
        raise HTTPException(status_code=404, detail=f"no frame {name} in clip {clip_id}") from exc
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    headers = {"Cache-Control": FRAME_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="image/jpeg", headers=headers)


@router.get("/api/status")
def status(ctx: CtxDep) -> dict[str, Any]:
    from dataengine.lineage.views.reports import quarantine_list, status_summary

    with ctx.db.session() as session:
        summary = status_summary(session)
        summary["quarantine"] = quarantine_list(session, last=20)
    return summary


@router.get("/api/clips/{clip_id}")
def clip_json(clip_id: str, ctx: CtxDep) -> dict[str, Any]:
    from dataengine.lineage.views.reports import clip_history

    checked(CLIP_ID, clip_id, "clip id")
    try:
        with ctx.db.session() as session:
            return clip_history(session, clip_id)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@router.get("/api/stream")
def stream_json(ctx: CtxDep, links: LinksDep, after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    found = stream_html(ctx, links, after=after)
    return {"last_id": found.last_id, "html": found.cards, "events": found.events}
