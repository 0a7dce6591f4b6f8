"""The Models page: every model version, its scores on both held-out sets per class with support, and
the promotion gate's decision.

A class that had no example in a set is shown "n/a (0 examples)" and left out of the plots, never drawn
as 0.0.
"""

from __future__ import annotations

from html import escape
from typing import Any

from dataengine.airflow.ui.charts import line_plot_svg
from dataengine.airflow.ui.pages import Links, layout, table
from dataengine.lineage.views.pages import ModelRow
from dataengine.training.metrics import NA_TEXT, Evaluation, format_ap

#: The model row's metrics keys of the two held-out sets, with how the page names them.
SETS = (("eval", "regression set"), ("edge_eval", "edge-case set"))


def _evaluation(row: ModelRow, key: str) -> Evaluation | None:
    doc = (row.model.metrics or {}).get(key)
    return Evaluation.from_dict(doc) if isinstance(doc, dict) else None


def _map_cell(evaluation: Evaluation | None, label: str = "") -> str:
    if evaluation is None:
        return '<span class="muted">-</span>'
    value = NA_TEXT if evaluation.map is None else f"{evaluation.map:.3f}"
    where = evaluation.held_out or label
    return escape(value) + (f' <span class="muted">{escape(where)}</span>' if where else "")


def _gate(row: ModelRow) -> tuple[str, str]:
    """The decision's short form (for the table and the x axis) and its full reason."""
    metrics: dict[str, Any] = row.model.metrics or {}
    reason = str(metrics.get("decision") or "")
    gate = metrics.get("gate")
    if not isinstance(gate, dict):
        return ("", reason)
    failed = [c.get("name", "") for c in gate.get("checks") or [] if not c.get("passed")]
    if gate.get("promoted"):
        return ("promoted", reason)
    return ("refused: " + ", ".join(failed) if failed else "refused", reason)


def _gate_cell(row: ModelRow) -> str:
    short, reason = _gate(row)
    if not short:
        return f'<span class="muted">{escape(reason) or "-"}</span>'
    cls = "ok" if short == "promoted" else "err"
    return f'<span class="gate {cls}" title="{escape(reason)}">{escape(short)}</span>'


def _class_names(evaluations: list[Evaluation | None]) -> list[str]:
    names: dict[str, None] = {}
    for evaluation in evaluations:
        for score in evaluation.classes if evaluation else ():
            names.setdefault(score.name, None)
    return list(names)


def _set_plot(rows: list[ModelRow], key: str, title: str) -> str:
    """AP per class (with support on hover and in a table) and the set's mAP over model versions."""
    evaluations = [_evaluation(row, key) for row in rows]
    if not any(evaluations):
        return f"<h2>{escape(title)}</h2><p class='muted'>No model was scored on it yet.</p>"
    names = _class_names(evaluations)
    series: dict[str, list[float | None]] = {"mAP": [e.map if e else None for e in evaluations]}
    notes: dict[str, list[str]] = {"mAP": [_map_text(e) for e in evaluations]}
    for name in names:
        scores = [e.score(name) if e else None for e in evaluations]
        series[name] = [s.ap if s else None for s in scores]
        notes[name] = [format_ap(s.ap, s.support) if s else "not scored" for s in scores]
    labels = [row.model.id + {"promoted": " ✓", "": ""}.get(_gate(row)[0], " ✗") for row in rows]
    plot = line_plot_svg(labels, series, notes=notes)
    header = ["", *(row.model.id for row in rows)]
    cells = [[escape(name), *(_support_cell(text) for text in notes[name])] for name in ["mAP", *names]]
    return f"<h2>{escape(title)}</h2>" + plot + table(header, cells, "classes")


def _map_text(evaluation: Evaluation | None) -> str:
    if evaluation is None:
        return "not scored"
    if evaluation.map is None:
        return NA_TEXT
    return f"{evaluation.map:.3f} ({evaluation.n_gt_boxes} boxes)"


def _support_cell(text: str) -> str:
    muted = text.startswith(("n/a", "not scored"))
    return f'<span class="muted">{escape(text)}</span>' if muted else escape(text)


def _row_cells(links: Links, row: ModelRow) -> list[str]:
    m = row.model
    metrics = m.metrics or {}
    parent = (
        f'<a href="#{escape(m.parent_model_id)}">{escape(m.parent_model_id)}</a>' if m.parent_model_id else ""
    )
    regression = _evaluation(row, "eval")
    return [
        f'<span id="{escape(m.id)}" class="model">{escape(m.id)}</span>',
        escape(m.status),
        _origin_cell(m),
        parent,
        _map_cell(regression, str(metrics.get("held_out") or "")),
        escape(f"{regression.map50:.3f}") if regression and regression.map50 is not None else "",
        _map_cell(_evaluation(row, "edge_eval")),
        _gate_cell(row),
        f"{_pct(row.edit_rate)} <span class='muted'>({row.boxes_changed}/{row.boxes_proposed} boxes, "
        f"{row.reviews} reviews)</span>",
        m.created_at.strftime("%Y-%m-%d %H:%M"),
    ]


def _origin_cell(model: Any) -> str:
    """The dataset a model was trained on, or the file it was imported from (with its sha256)."""
    if getattr(model, "origin", "trained") != "imported":
        return escape(model.dataset_id or "")
    source = str(model.source_uri or "").rsplit("/", 1)[-1]
    sha = str(model.source_sha256 or "")[:12]
    return f'imported: {escape(source)} <span class="muted">sha256 {escape(sha)}…</span>'


def _pct(value: float | None) -> str:
    return '<span class="muted">-</span>' if value is None else f"{100 * value:.1f}%"


def models_page(links: Links, rows: list[ModelRow]) -> str:
    """Every model (newest first) with both sets' mAP and the gate's decision; per-class plots."""
    header = [
        "model", "status", "dataset", "parent", "regression mAP@[.5:.95]", "mAP@.5", "edge-case mAP",
        "gate", "review edit rate", "created",
    ]  # fmt: skip
    body = table(header, [_row_cells(links, row) for row in reversed(rows)])
    if not any(_evaluation(row, key) for row in rows for key, _ in SETS):
        return layout(links, "models", "Models", body + "<p>No evaluated models yet.</p>")
    body += "".join(_set_plot(rows, key, f"AP per class on the {kind}") for key, kind in SETS)
    body += (
        "<p class='muted'>AP is COCO AP@[.5:.95]; each figure carries its support (ground-truth boxes). "
        f"A class without examples in a set is {NA_TEXT}, not 0. ✓ promoted by the gate, ✗ refused "
        "(hover the gate column for every check and its numbers). Edit rate: boxes reviewers added, "
        "removed or moved, per box the model proposed.</p>"
    )
    return layout(links, "models", "Models", body)
