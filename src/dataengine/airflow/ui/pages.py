"""Server-rendered HTML of the monitoring pages: layout, funnel, clip and video lists (models: modelpage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from dataengine.airflow.ui.static import CSS
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
class Links:
    """URLs inside the app (under the mount prefix) and into the Airflow UI around it."""

    base: str  # the app's mount path, e.g. "/dataengine", "" when served alone
    airflow: str  # the Airflow UI's root

    def app(self, path: str, **params: Any) -> str:
        """The URL of an app path with query ``params``, escaped for an HTML attribute."""
        query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
        return escape(f"{self.base}{path}" + (f"?{query}" if query else ""))

    def clip(self, clip_id: str) -> str:
        return self.app(f"/clips/{quote(clip_id)}")

    def video(self, video_id: str) -> str:
        return self.app(f"/videos/{quote(video_id)}")

    def run(self, run_id: str | None) -> str:
        """A link to the Airflow task instance (``dag/run/task``), or plain text for a CLI run."""
        if not run_id:
            return ""
        parts = run_id.split("/", 2)
        if len(parts) != 3 or parts[0] == "cli":
            return f'<span class="muted">{escape(run_id)}</span>'
        dag_id, run, task = parts
        task = task.split("[", 1)[0]
        dag_q, run_q, task_q = (quote(p, safe="") for p in (dag_id, run, task))
        href = f"{self.airflow}/dags/{dag_q}/runs/{run_q}/tasks/{task_q}"
        return (
            f'<a class="run" href="{escape(href)}" target="_top" title="{escape(run_id)}">'
            f"{escape(dag_id)} {escape(run)}</a>"
        )


def layout(links: Links, active: str, title: str, body: str, script: str = "") -> str:
    """A whole page: navigation, title and body."""
    nav = "".join(
        f'<a href="{links.app(path)}" class="{"on" if key == active else ""}">{label}</a>'
        for key, path, label in NAV
    )
    js = f"<script>{script}</script>" if script else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} · dataengine</title>"
        f"<style>{CSS}</style></head><body><nav>{nav}</nav><main><h1>{escape(title)}</h1>{body}</main>{js}"
        "</body></html>"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _funnel_bars(links: Links, counts: dict[str, int]) -> str:
    # A clip in a later stage has passed the earlier ones; rejected clips were scored first.
    reached: dict[str, int] = {}
    running = 0
    for stage in reversed(FUNNEL_STAGES):
        running += counts.get(stage, 0) + (counts.get("rejected", 0) if stage == "scored" else 0)
        reached[stage] = running
    top = max(reached.values()) or 1
    rows = [
        [
            f'<a href="{links.app("/clips", stage=stage)}">{stage}</a>',
            f'<span class="num" data-stage="{stage}">{counts.get(stage, 0)}</span>',
            f'<span class="bar" style="width:{300 * reached[stage] / top:.0f}px"></span> {reached[stage]}',
        ]
        for stage in FUNNEL_STAGES
    ]
    rows += [
        [f'<a href="{links.app("/clips", stage=s)}">{s}</a>', str(counts.get(s, 0)), ""]
        for s in ("rejected", "quarantined")
    ]
    return table(["stage", "clips now", "clips that reached it"], rows, "funnel")


def _day_cell(links: Links, day: FunnelDay, stage: str) -> str:
    count = day.counts.get(stage, 0)
    if not count:
        return '<span class="muted">0</span>'
    runs = day.runs.get(stage, [])
    more = f'<span class="muted">+{len(runs) - 3} more runs</span>' if len(runs) > 3 else ""
    shown = "".join(links.run(run_id) for run_id, _ in runs[:3])
    return f'<b>{count}</b><div class="runs">{shown}{more}</div>'


def _quarantine(links: Links, items: list[QuarantineItem]) -> str:
    if not items:
        return "<p class='muted'>Nothing quarantined.</p>"
    rows = [
        [
            escape(q.at.strftime("%Y-%m-%d %H:%M")),
            escape(q.kind),
            escape(q.input),
            escape(q.stage),
            escape(q.reason),
            f'<a href="{links.clip(q.clip_id)}">{q.clip_id}</a>' if q.clip_id else "",
        ]
        for q in items
    ]
    return table(["at (UTC)", "kind", "input", "stage", "reason", "clip"], rows, "quarantine")


def funnel_page(
    links: Links,
    summary: dict[str, Any],
    quarantine: list[QuarantineItem],
    days: list[FunnelDay],
    until: str,
    span: int,
    older: str,
    newer: str | None,
) -> str:
    """Clips per stage now, and the stage entries per day with the runs that made them."""
    head = (
        f"<p>{summary['videos']} videos, {summary['clips']} clips, {summary['quarantined']} quarantined; "
        f"promoted model: {escape(str(summary['promoted_model']))}</p>"
    )
    rows = [
        [escape(day.day)] + [_day_cell(links, day, s) for s in (*FUNNEL_STAGES, "rejected")] for day in days
    ]
    per_day = (
        table(["day", *FUNNEL_STAGES, "rejected"], rows, "days")
        if rows
        else "<p>No clip moved in these days.</p>"
    )
    pager = f'<a href="{links.app("/", until=older, days=span)}">← older</a>'
    if newer:
        pager += f'<a href="{links.app("/", until=newer, days=span)}">newer →</a>'
    return layout(
        links,
        "funnel",
        "Data engine funnel",
        f"{head}<h2>Clips per stage</h2>{_funnel_bars(links, summary['stages'])}"
        f"<h2>Clips entering each stage per day (UTC), {span} days to {escape(until)}</h2>"
        f"<p class='muted'>Links open the Airflow task that moved the clips.</p>{per_day}"
        f'<p class="pager">{pager}</p>'
        f"<h2>Recently quarantined</h2>{_quarantine(links, quarantine)}",
    )


def clips_page(
    links: Links, clips: list[Clip], *, stage: str | None, video_id: str | None, limit: int
) -> str:
    """One page of clips, filtered by stage or video."""
    rows = [
        [
            f'<a class="clip" href="{links.clip(c.id)}">{c.id}</a>',
            f'<a href="{links.video(c.video_id)}">{c.video_id}</a>',
            f"{c.start_time:.1f}s",
            str(c.n_frames),
            escape(c.stage),
            c.updated_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for c in clips
    ]
    filters = " ".join(
        f'<a href="{links.app("/clips", stage=s, video=video_id)}">{s}</a>' for s in CLIP_STAGES
    )
    nxt = (
        f'<a class="next" href="{links.app("/clips", stage=stage, video=video_id, after=clips[-1].id)}">'
        "next page →</a>"
        if len(clips) == limit
        else ""
    )
    what = " ".join(
        x for x in (f"in stage {stage}" if stage else "", f"of video {video_id}" if video_id else "") if x
    )
    body = (
        f"<p>Filter: {filters} · <a href='{links.app('/clips')}'>all</a></p>"
        + table(["clip", "video", "start", "frames", "stage", "updated (UTC)"], rows)
        + f'<p class="pager">{nxt}</p>'
    )
    return layout(links, "clips", f"Clips {what}".strip(), body)


def videos_page(links: Links, videos: list[tuple[Video, int]], limit: int) -> str:
    """One page of videos; each opens its trigger timeline."""
    rows = [
        [
            f'<a class="video" href="{links.video(v.id)}">{v.id}</a>',
            escape(v.camera or ""),
            f"{v.duration:.1f}s" if v.duration else "",
            str(n),
            escape(v.status),
        ]
        for v, n in videos
    ]
    nxt = (
        f'<a href="{links.app("/videos", after=videos[-1][0].id)}">next page →</a>'
        if len(videos) == limit
        else ""
    )
    body = table(["video", "camera", "duration", "clips", "status"], rows) + f'<p class="pager">{nxt}</p>'
    return layout(links, "videos", "Videos", body)
