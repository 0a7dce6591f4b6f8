"""Inline SVG charts: a video's trigger timeline and a line plot of metrics over model versions.

This module computes the geometry; templates/charts.svg draws it (escaping every name and title).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup

from dataengine.airflow.ui.render import render
from dataengine.lineage.views.pages import Timeline

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_W, _H, _L, _R, _T, _B = 960, 280, 44, 16, 16, 36


@dataclass(frozen=True)
class Point:
    """A marker at (x, y) in the chart's pixels, with its hover text."""

    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Line:
    """One named series: a polyline through its points in one colour."""

    name: str
    colour: str
    points: list[Point]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Band:
    """A clip's span on the timeline, shaded when selected, linking to the clip page."""

    clip_id: str
    href: str
    selected: bool
    x: float
    width: float


@dataclass(frozen=True)
class Chart:
    """What charts.svg draws: axes with ticks, clip bands, lines, budget lines and a legend."""

    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    lines: list[Line]
    radius: float
    bands: list[Band] = field(default_factory=list)
    budgets: list[Point] = field(default_factory=list)  # y of the dashed line; x unused
    timeline_keys: bool = False  # the legend names the selected shade and the budget line

    width, height, left, right, top, bottom = _W, _H, _L, _R, _T, _B


def _y(value: float, lo: float = 0.0, hi: float = 1.0) -> float:
    span = (hi - lo) or 1.0
    return _T + (_H - _T - _B) * (1.0 - (value - lo) / span)


def _clip_span(timeline: Timeline) -> list[tuple[str, float, float]]:
    """(clip id, start s, end s) of every clip; the end comes from the video's fps or the next clip."""
    fps = timeline.video.fps or 0.0
    spans = []
    for i, clip in enumerate(timeline.clips):
        if fps > 0:
            end = clip.start_time + clip.n_frames / fps
        elif i + 1 < len(timeline.clips):
            end = timeline.clips[i + 1].start_time
        else:
            end = clip.start_time + 1.0
        spans.append((clip.id, clip.start_time, max(end, clip.start_time + 1e-3)))
    return spans


def timeline_svg(timeline: Timeline, clip_href: Callable[[str], str]) -> Markup:
    """Each trigger's score per clip along the video, selected clips shaded, the budget line dashed."""
    spans = _clip_span(timeline)
    if not spans:
        return render("no_chart.html", text="No clips for this video yet.")
    t_end = max(end for _, _, end in spans)

    def x(seconds: float) -> float:
        return _L + (_W - _L - _R) * seconds / t_end

    step = max(1, round(t_end / 10))
    bands = [
        Band(cid, clip_href(cid), cid in timeline.selected, x(start), max(x(end) - x(start) - 1, 1))
        for cid, start, end in spans
    ]
    lines = []
    for i, name in enumerate(sorted(timeline.scores)):
        scores = timeline.scores[name]
        points = [
            Point(x((start + end) / 2), _y(scores[cid]), f"{name} {scores[cid]:.3f} ({cid})")
            for cid, start, end in spans
            if cid in scores
        ]
        lines.append(Line(name, PALETTE[i % len(PALETTE)], points))
    budgets = [
        Point(0.0, _y(line), f"budget {k} of {n} clips in {run_id}: selected score >= {line:.3f}")
        for run_id, (line, k, n) in sorted(timeline.budgets.items())
        if line is not None
    ]
    chart = Chart(
        x_ticks=[(x(t), f"{t}s") for t in range(0, int(t_end) + 1, step)],
        y_ticks=[(_y(v), f"{v:.1f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        lines=lines,
        radius=3,
        bands=bands,
        budgets=budgets,
        timeline_keys=True,
    )
    return render("charts.svg", chart=chart)


def line_plot_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    notes: Mapping[str, Sequence[str]] | None = None,
) -> Markup:
    """One line per series over the x ``labels`` (model versions); values in [0, 1].

    A None value is a point that was not measured: it is left out (never drawn as 0). ``notes`` gives
    each point's hover text (e.g. its support) in place of the bare value.
    """
    if not labels or not series:
        return render("no_chart.html", text="No evaluated models yet.")
    n = len(labels)

    def x(i: int) -> float:
        return _L + (_W - _L - _R) * (i + 0.5) / n

    lines = []
    for s, (name, values) in enumerate(series.items()):
        texts = (notes or {}).get(name)
        points = [
            Point(x(i), _y(v), f"{name} {texts[i] if texts else f'{v:.3f}'}")
            for i, v in enumerate(values)
            if v is not None
        ]
        lines.append(Line(name, PALETTE[s % len(PALETTE)], points))
    chart = Chart(
        x_ticks=[(x(i), label) for i, label in enumerate(labels)],
        y_ticks=[(_y(v), f"{v:.1f}") for v in (0, 0.5, 1)],
        lines=lines,
        radius=3.5,
    )
    return render("charts.svg", chart=chart)
