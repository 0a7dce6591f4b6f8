"""Inline SVG charts: a video's trigger timeline and a line plot of metrics over model versions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

from dataengine.lineage.views.pages import Timeline

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_W, _H, _L, _R, _T, _B = 960, 280, 44, 16, 16, 36


def _y(value: float, lo: float = 0.0, hi: float = 1.0) -> float:
    span = (hi - lo) or 1.0
    return _T + (_H - _T - _B) * (1.0 - (value - lo) / span)


def _axes(x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]]) -> str:
    parts = [f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - _R}" y2="{_H - _B}" stroke="#888"/>']
    parts.append(f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_H - _B}" stroke="#888"/>')
    for x, label in x_ticks:
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _B + 16}" font-size="11" text-anchor="middle">{escape(label)}</text>'
        )
    for y, label in y_ticks:
        parts.append(f'<line x1="{_L}" y1="{y:.1f}" x2="{_W - _R}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_L - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    return "".join(parts)


def _legend(names: Sequence[str], extra: str = "") -> str:
    items = "".join(
        f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{escape(name)}</span>'
        for i, name in enumerate(names)
    )
    return f'<div class="legend">{items}{extra}</div>'


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


def timeline_svg(timeline: Timeline, clip_href: Callable[[str], str]) -> str:
    """Each trigger's score per clip along the video, selected clips shaded, the budget line dashed."""
    spans = _clip_span(timeline)
    if not spans:
        return "<p>No clips for this video yet.</p>"
    t_end = max(end for _, _, end in spans)

    def x(seconds: float) -> float:
        return _L + (_W - _L - _R) * seconds / t_end

    parts = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img">']
    step = max(1, round(t_end / 10))
    x_ticks = [(x(t), f"{t}s") for t in range(0, int(t_end) + 1, step)]
    parts.append(_axes(x_ticks, [(_y(v), f"{v:.1f}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]))
    for clip_id, start, end in spans:
        cls = "sel" if clip_id in timeline.selected else "clip"
        parts.append(
            f'<a href="{escape(clip_href(clip_id))}" target="_self">'
            f'<rect class="{cls}" data-clip="{clip_id}" '
            f'x="{x(start):.1f}" y="{_T}" width="{max(x(end) - x(start) - 1, 1):.1f}" '
            f'height="{_H - _T - _B}"><title>{clip_id}</title></rect></a>'
        )
    names = sorted(timeline.scores)
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        points = [
            (x((start + end) / 2), _y(timeline.scores[name][cid]), cid, timeline.scores[name][cid])
            for cid, start, end in spans
            if cid in timeline.scores[name]
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
            f"<title>{escape(name)} {value:.3f} ({cid})</title></circle>"
            for px, py, cid, value in points
        )
    for run_id, (line, k, n) in sorted(timeline.budgets.items()):
        if line is None:
            continue
        parts.append(
            f'<line class="budget" x1="{_L}" x2="{_W - _R}" y1="{_y(line):.1f}" y2="{_y(line):.1f}" '
            f'stroke="#c00" stroke-dasharray="6 4"><title>budget {k} of {n} clips in {escape(run_id)}: '
            f"selected score &gt;= {line:.3f}</title></line>"
        )
    parts.append("</svg>")
    extra = (
        '<span class="key"><i class="sel"></i>selected</span>'
        '<span class="key"><i class="bud"></i>budget line</span>'
    )
    return "".join(parts) + _legend(names, extra)


def line_plot_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    notes: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One line per series over the x ``labels`` (model versions); values in [0, 1].

    A None value is a point that was not measured: it is left out (never drawn as 0). ``notes`` gives
    each point's hover text (e.g. its support) in place of the bare value.
    """
    if not labels or not series:
        return "<p>No evaluated models yet.</p>"
    n = len(labels)

    def x(i: int) -> float:
        return _L + (_W - _L - _R) * (i + 0.5) / n

    parts = [f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img">']
    parts.append(
        _axes([(x(i), label) for i, label in enumerate(labels)], [(_y(v), f"{v:.1f}") for v in (0, 0.5, 1)])
    )
    names = list(series)
    for s, name in enumerate(names):
        colour = PALETTE[s % len(PALETTE)]
        texts = (notes or {}).get(name)
        points = [(i, x(i), _y(v), v) for i, v in enumerate(series[name]) if v is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for _, px, py, _ in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{colour}"><title>{escape(name)} '
            f"{escape(texts[i]) if texts else f'{value:.3f}'}</title></circle>"
            for i, px, py, value in points
        )
    parts.append("</svg>")
    return "".join(parts) + _legend(names)
