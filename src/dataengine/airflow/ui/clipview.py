"""The clip page's inputs: frames with boxes of two annotation versions, history, trigger scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from dataengine.airflow.ui.pages import Links, page
from dataengine.airflow.ui.static import ORIGIN_COLOURS
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


@dataclass(frozen=True)
class Panel:
    """One viewer panel: the annotation version it draws ("none": frames only) and its heading."""

    key: str
    title: str


def _panel_title(view: ClipView, panel: str) -> str:
    if panel == "none" or int(panel) not in view.annotations:
        return "frames"
    a = view.annotations[int(panel)]
    models = ", ".join(a.producer.get("models", []))
    return f"v{a.version} · {a.source}" + (f" · {models}" if models else "")


def clip_page(links: Links, view: ClipView) -> Markup:
    """The clip page: two annotation versions over the frames, trigger scores, history and versions."""
    clip_id = view.history["clip"]["clip_id"]
    keys = [str(v) for v in view.panels if v in view.annotations] or ["none"]
    data = {
        "frames": _frames(view),
        "frameBase": links.clip(clip_id) + "/",
        "panels": keys,
        "versions": {str(v): {"boxes": _boxes(a)} for v, a in view.annotations.items()},
        "colours": ORIGIN_COLOURS,
    }
    return page(
        "clip.html",
        links,
        "clips",
        f"Clip {clip_id}",
        history=view.history,
        errors=view.errors,
        panels=[Panel(key, _panel_title(view, key)) for key in keys],
        data=data,
    )
