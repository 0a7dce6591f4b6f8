"""Inputs of the monitoring pages' templates: layout, funnel, clip and video lists (models: modelpage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from dataengine.airflow.ui.render import render
from dataengine.lineage import CLIP_STAGES, Clip, QuarantineItem, Video
from dataengine.lineage.views.funnel import FunnelDay
from dataengine.lineage.views.pages import FUNNEL_STAGES

NAV = (
    ("funnel", "/", "Funnel"),
    ("videos", "/videos", "Trigger timelines"),
    ("clips", "/clips", "Clips"),
    ("stream", "/stream", "Predictions"),
    ("models", "/models", "Models"),
)


@dataclass(frozen=True)
class RunLink:
    """A lineage run id as the pages show it: the Airflow task it names, or plain text (``href`` None)."""

    run_id: str
    href: str | None = None
    dag_id: str = ""
    run: str = ""


@dataclass(frozen=True)
class Links:
    """URLs inside the app (under the mount prefix) and into the Airflow UI (the templates escape them)."""

    base: str  # the app's mount path, e.g. "/dataengine", "" when served alone
    airflow: str  # the Airflow UI's root

    def app(self, path: str, **params: Any) -> str:
        """The URL of an app path with query ``params``."""
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    def clip(self, clip_id: str) -> str:
        return self.app(f"/clips/{quote(clip_id)}")

    def video(self, video_id: str) -> str:
        return self.app(f"/videos/{quote(video_id)}")

    def run(self, run_id: str | None) -> RunLink | None:
        """The Airflow task instance a run id names (``dag/run/task``); plain text for a CLI run."""
        if not run_id:
            return None
        parts = run_id.split("/", 2)
        if len(parts) != 3 or parts[0] == "cli":
            return RunLink(run_id)
        dag_id, run, task = parts
        task = task.split("[", 1)[0]
        dag_q, run_q, task_q = (quote(p, safe="") for p in (dag_id, run, task))
        return RunLink(run_id, f"{self.airflow}/dags/{dag_q}/runs/{run_q}/tasks/{task_q}", dag_id, run)


def page(template: str, links: Links, active: str, title: str, **context: Any) -> Markup:
    """A whole page: ``template`` (which extends layout.html) under the navigation with ``active`` lit."""
    return render(template, links=links, nav=NAV, active=active, title=title, **context)


def funnel_page(
    links: Links,
    summary: dict[str, Any],
    quarantine: list[QuarantineItem],
    days: list[FunnelDay],
    until: str,
    span: int,
    older: str,
    newer: str | None,
) -> Markup:
    """Clips per stage now, and the stage entries per day with the runs that made them."""
    counts: dict[str, int] = summary["stages"]
    # A clip in a later stage has passed the earlier ones; rejected clips were scored first.
    reached: dict[str, int] = {}
    running = 0
    for stage in reversed(FUNNEL_STAGES):
        running += counts.get(stage, 0) + (counts.get("rejected", 0) if stage == "scored" else 0)
        reached[stage] = running
    return page(
        "funnel.html",
        links,
        "funnel",
        "Data engine funnel",
        summary=summary,
        counts=counts,
        stages=FUNNEL_STAGES,
        reached=reached,
        top=max(reached.values()) or 1,
        day_stages=[*FUNNEL_STAGES, "rejected"],
        days=days,
        until=until,
        span=span,
        older=older,
        newer=newer,
        quarantine=quarantine,
    )


def clips_page(
    links: Links, clips: Sequence[Clip], *, stage: str | None, video_id: str | None, limit: int
) -> Markup:
    """One page of clips, filtered by stage or video."""
    what = " ".join(
        x for x in (f"in stage {stage}" if stage else "", f"of video {video_id}" if video_id else "") if x
    )
    full = len(clips) == limit
    return page(
        "clips.html",
        links,
        "clips",
        f"Clips {what}".strip(),
        clips=clips,
        stages=CLIP_STAGES,
        video_id=video_id,
        next_href=links.app("/clips", stage=stage, video=video_id, after=clips[-1].id) if full else None,
    )


def videos_page(links: Links, videos: Sequence[tuple[Video, int]], limit: int) -> Markup:
    """One page of videos; each opens its trigger timeline."""
    full = len(videos) == limit
    return page(
        "videos.html",
        links,
        "videos",
        "Videos",
        videos=videos,
        next_href=links.app("/videos", after=videos[-1][0].id) if full else None,
    )
