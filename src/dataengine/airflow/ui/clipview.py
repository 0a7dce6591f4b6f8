"""The clip page (frames with boxes of two annotation versions, history, trigger scores) and stream cards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from dataengine.airflow.ui.pages import Links, layout, table
from dataengine.airflow.ui.static import CLIP_JS, ORIGIN_COLOURS
from dataengine.clips import ClipMeta, frame_name
from dataengine.formats import ClipAnnotations, Frame


@dataclass
class ClipView:
    """What the clip page shows: the lineage history, the frames and the chosen annotation versions."""

    history: dict[str, Any]
    meta: ClipMeta | None
    panels: list[int]
    annotations: dict[int, ClipAnnotations] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def default_panels(annotations: list[dict[str, Any]]) -> list[int]:
    """The latest autolabel version beside the latest version from anything else (review first)."""

    def latest(sources: tuple[str, ...]) -> int | None:
        versions = [a["version"] for a in annotations if a["source"] in sources]
        return max(versions) if versions else None

    auto = latest(("autolabel",))
    other = latest(("review",)) or latest(("import", "synthetic"))
    return [v for v in (auto, other) if v is not None] or [a["version"] for a in annotations[-1:]]


def _boxes(annotations: ClipAnnotations) -> dict[str, list[list[Any]]]:
    return {
        str(frame.index): [[*b.xyxy, b.label, b.origin, b.score] for b in frame.boxes]
        for frame in annotations.frames
    }


def _frames(view: ClipView) -> list[dict[str, Any]]:
    """Every sampled frame with its image and size (the annotation's size wins: boxes are in its pixels)."""
    sized: dict[int, Frame] = {}
    for version in view.annotations.values():
        sized.update({frame.index: frame for frame in version.frames})
    indices = list(view.meta.sampled) if view.meta else sorted(sized)
    width, height = (view.meta.width, view.meta.height) if view.meta else (640, 360)
    return [
        {
            "index": i,
            "image": sized[i].image if i in sized else frame_name(i),
            "width": sized[i].width if i in sized else width,
            "height": sized[i].height if i in sized else height,
        }
        for i in indices
    ]


def _script_json(value: Any) -> str:
    # "<" cannot close the script element when escaped; JSON.parse reads \u003c back.
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _viewer(links: Links, view: ClipView) -> str:
    clip_id = view.history["clip"]["clip_id"]
    panel_keys = [str(v) for v in view.panels if v in view.annotations] or ["none"]
    data = {
        "frames": _frames(view),
        "frameBase": links.clip(clip_id) + "/",
        "panels": panel_keys,
        "versions": {str(v): {"boxes": _boxes(a)} for v, a in view.annotations.items()},
        "colours": ORIGIN_COLOURS,
    }

    def options(chosen: str) -> str:
        return "".join(
            f'<option value="{a["version"]}"{" selected" if str(a["version"]) == chosen else ""}>'
            f"v{a['version']} {escape(a['source'])}</option>"
            for a in view.history["annotations"]
        )

    picker = (
        f'<form method="get">Compare <select name="a">{options(panel_keys[0])}</select> '
        f'with <select name="b">{options(panel_keys[-1])}</select> '
        "<button>show</button></form>"
        if view.history["annotations"]
        else "<p class='muted'>No annotation version yet: frames only.</p>"
    )
    panels = "".join(
        f'<div class="panel"><h3>{_panel_title(view, p)}</h3><div class="frame">'
        f'<img id="img-{i}" alt="frame" width="480">'
        f'<svg id="svg-{i}" preserveAspectRatio="none"></svg></div></div>'
        for i, p in enumerate(panel_keys)
    )
    legend = " ".join(
        f'<span class="key"><i style="background:{c}"></i>{o}</span>' for o, c in ORIGIN_COLOURS.items()
    )
    controls = (
        '<p><button id="play" type="button">play / pause</button> '
        '<input id="scrub" type="range" min="0" value="0" style="width:420px"> '
        '<span id="frame-label"></span></p>'
    )
    return (
        f"{picker}{controls}<div class='legend'>{legend}</div><div class='viewer'>{panels}</div>"
        f'<script id="clip-data" type="application/json">{_script_json(data)}</script>'
    )


def _panel_title(view: ClipView, panel: str) -> str:
    if panel == "none" or int(panel) not in view.annotations:
        return "frames"
    a = view.annotations[int(panel)]
    models = ", ".join(a.producer.get("models", []))
    return escape(f"v{a.version} · {a.source}" + (f" · {models}" if models else ""))


def _events(links: Links, events: list[dict[str, Any]]) -> str:
    rows = [
        [
            escape(e["at"][:19].replace("T", " ")),
            escape(e["stage"]),
            escape(e["status"]),
            links.run(e["run_id"]),
            escape(e["actor"] or ""),
            f"<code>{escape(json.dumps(e['details'], sort_keys=True)[:300])}</code>",
        ]
        for e in events
    ]
    return table(["at (UTC)", "stage", "status", "run", "actor", "details"], rows, "events")


def clip_page(links: Links, view: ClipView) -> str:
    """The clip page."""
    clip = view.history["clip"]
    head = (
        f'<p>video <a href="{links.video(clip["video_id"])}">{clip["video_id"]}</a> '
        f"· stage <b>{escape(clip['stage'])}</b>"
        f" · starts at {clip['start_time']:.2f}s · {clip['n_frames']} source frames</p>"
    )
    errors = "".join(f'<p class="err">{escape(e)}</p>' for e in view.errors)
    triggers = table(
        ["trigger", "score", "model", "peak frames"],
        [
            [
                escape(t["trigger"]),
                f'{t["score"]:.3f} <span class="bar" style="width:{100 * t["score"]:.0f}px"></span>',
                escape(t["model_id"] or ""),
                escape(", ".join(map(str, t["frames"][:10]))),
            ]
            for t in view.history["triggers"]
        ],
        "triggers",
    )
    versions = table(
        ["version", "source", "boxes", "frames", "parent", "producer"],
        [
            [
                f"v{a['version']}",
                escape(a["source"]),
                str(a["n_boxes"]),
                str(a["n_frames"]),
                f"v{a['parent_version']}" if a["parent_version"] else "",
                escape(json.dumps(a["producer"])[:200]),
            ]
            for a in view.history["annotations"]
        ],
    )
    datasets = ", ".join(
        f"{escape(d['dataset_id'])} ({escape(d['split'])})" for d in view.history["datasets"]
    )
    body = (
        f"{head}{errors}{_viewer(links, view)}<h2>Trigger scores</h2>{triggers}<h2>Lineage history</h2>"
        f"{_events(links, view.history['events'])}<h2>Annotation versions</h2>{versions}"
        f"<p>Datasets: {datasets or '<span class=muted>none</span>'}</p>"
    )
    return layout(links, "clips", f"Clip {clip['clip_id']}", body, CLIP_JS)


def frame_with_boxes(links: Links, clip_id: str, frame: dict[str, Any], boxes: list[list[Any]]) -> str:
    """A static frame image with its boxes drawn over it (the stream's cards)."""
    rects = "".join(
        f'<rect x="{b[0]}" y="{b[1]}" width="{b[2] - b[0]}" height="{b[3] - b[1]}" fill="none" '
        f'stroke="{ORIGIN_COLOURS.get(b[5], "#000")}" stroke-width="{max(2, frame["width"] // 320)}"/>'
        for b in boxes
    )
    return (
        f'<div class="frame"><img loading="lazy" alt="{clip_id}" '
        f'src="{links.clip(clip_id)}/{frame["image"]}">'
        f'<svg viewBox="0 0 {frame["width"]} {frame["height"]}" preserveAspectRatio="none">'
        f"{rects}</svg></div>"
    )


def stream_card(links: Links, event: dict[str, Any], thumb: str) -> str:
    """One scoring or autolabelling event: the clip, what happened, and what the model saw."""
    d = event["details"]
    if event["stage"] == "autolabelled":
        what = (
            f"autolabelled by {escape(str(d.get('model_id')))}: "
            f"{d.get('n_boxes', '?')} boxes, v{d.get('version', '?')}"
        )
    else:
        scores = d.get("scores") or {}
        what = "scored " + ", ".join(f"{escape(k)} {v:.2f}" for k, v in sorted(scores.items()))
    return (
        f'<div class="card new" data-event="{event["id"]}">'
        f'<a class="clip" href="{links.clip(event["clip_id"])}">'
        f'{event["clip_id"]}</a><br><span class="muted">{escape(event["at"][:19])}</span> {what}<br>'
        f"{thumb}<div>{links.run(event['run_id'])}</div></div>"
    )
