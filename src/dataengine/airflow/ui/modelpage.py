"""The Models page: every model version, its scores on both held-out sets per class with support, and
the promotion gate's decision.

A class that had no example in a set is shown "n/a (0 examples)" and left out of the plots, never drawn
as 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from dataengine.airflow.ui.charts import line_plot_svg
from dataengine.airflow.ui.pages import Links, page
from dataengine.lineage.views.pages import ModelRow
from dataengine.training.metrics import NA_TEXT, Evaluation, format_ap

#: The model row's metrics keys of the two held-out sets, with how the page names them.
SETS = (("eval", "regression set"), ("edge_eval", "edge-case set"))


def _evaluation(row: ModelRow, key: str) -> Evaluation | None:
    doc = (row.model.metrics or {}).get(key)
    return Evaluation.from_dict(doc) if isinstance(doc, dict) else None


def _as_promoted(rows: list[ModelRow], row: ModelRow) -> Evaluation | None:
    """``row``'s model on an edge-case set, scored as the promoted model in a later candidate's round."""
    for later in rows:
        metrics = later.model.metrics or {}
        doc = metrics.get("promoted_edge_eval")
        if metrics.get("promoted_model_id") == row.model.id and isinstance(doc, dict):
            return Evaluation.from_dict(doc)
    return None


def _set_evaluations(rows: list[ModelRow], key: str) -> tuple[list[Evaluation | None], list[bool]]:
    """Each model's evaluation on a set, and whether it comes from a later round (as the promoted model).

    A model scored on no edge-case set of its own (the bootstrap, before any trigger) takes its score
    from the next round, where it was the promoted model on the same frames as the candidate.
    """
    own = [_evaluation(row, key) for row in rows]
    if key != "edge_eval":
        return own, [False] * len(rows)
    borrowed = [_as_promoted(rows, row) if e is None else None for row, e in zip(rows, own, strict=True)]
    return [e or b for e, b in zip(own, borrowed, strict=True)], [b is not None for b in borrowed]


@dataclass(frozen=True)
class MapCell:
    """A set's mAP as the table shows it ("" when the set was not scored), with the set's name."""

    value: str
    where: str = ""


def _map_cell(evaluation: Evaluation | None, label: str = "") -> MapCell:
    if evaluation is None:
        return MapCell("")
    value = NA_TEXT if evaluation.map is None else f"{evaluation.map:.3f}"
    return MapCell(value, evaluation.held_out or label)


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


def _class_names(evaluations: list[Evaluation | None]) -> list[str]:
    names: dict[str, None] = {}
    for evaluation in evaluations:
        for score in evaluation.classes if evaluation else ():
            names.setdefault(score.name, None)
    return list(names)


@dataclass(frozen=True)
class SetPlot:
    """One held-out set: AP per class over model versions (a plot, and a table with the support)."""

    title: str
    models: list[str]
    plot: Markup | None  # None: no model was scored on the set yet
    cells: list[tuple[str, list[str]]]  # (series name, its text per model)


def _set_plot(rows: list[ModelRow], key: str, title: str) -> SetPlot:
    """AP per class (with support on hover and in a table) and the set's mAP over model versions."""
    evaluations, as_promoted = _set_evaluations(rows, key)
    if not any(evaluations):
        return SetPlot(title, [], None, [])
    names = _class_names(evaluations)

    def where(i: int) -> str:
        item = evaluations[i]
        return f", as the promoted model on {item.held_out}" if as_promoted[i] and item else ""

    series: dict[str, list[float | None]] = {"mAP": [e.map if e else None for e in evaluations]}
    notes: dict[str, list[str]] = {"mAP": [_map_text(e) + where(i) for i, e in enumerate(evaluations)]}
    for name in names:
        scores = [e.score(name) if e else None for e in evaluations]
        series[name] = [s.ap if s else None for s in scores]
        notes[name] = [
            format_ap(s.ap, s.support) + where(i) if s else "not scored" for i, s in enumerate(scores)
        ]
    labels = [row.model.id + {"promoted": " ✓", "": ""}.get(_gate(row)[0], " ✗") for row in rows]
    plot = line_plot_svg(labels, series, notes=notes)
    return SetPlot(title, [row.model.id for row in rows], plot, [(n, notes[n]) for n in ["mAP", *names]])


def _map_text(evaluation: Evaluation | None) -> str:
    if evaluation is None:
        return "not scored"
    if evaluation.map is None:
        return NA_TEXT
    return f"{evaluation.map:.3f} ({evaluation.n_gt_boxes} boxes)"


@dataclass(frozen=True)
class ModelLine:
    """One model's row of the table."""

    row: ModelRow
    origin: dict[str, str]  # {"dataset": id} or {"source": file name, "sha256": its first 12 digits}
    regression: MapCell
    map50: str
    edge: MapCell
    gate: tuple[str, str]  # (short form, full reason)
    edit_rate: str


def _line(row: ModelRow) -> ModelLine:
    regression = _evaluation(row, "eval")
    return ModelLine(
        row=row,
        origin=_origin(row.model),
        regression=_map_cell(regression, str((row.model.metrics or {}).get("held_out") or "")),
        map50=f"{regression.map50:.3f}" if regression and regression.map50 is not None else "",
        edge=_map_cell(_evaluation(row, "edge_eval")),
        gate=_gate(row),
        edit_rate="" if row.edit_rate is None else f"{100 * row.edit_rate:.1f}%",
    )


def _origin(model: Any) -> dict[str, str]:
    """The dataset a model was trained on, or the file it was imported from (with its sha256)."""
    if getattr(model, "origin", "trained") != "imported":
        return {"dataset": model.dataset_id or ""}
    return {
        "source": str(model.source_uri or "").rsplit("/", 1)[-1],
        "sha256": str(model.source_sha256 or "")[:12],
    }


def models_page(links: Links, rows: list[ModelRow]) -> Markup:
    """Every model (newest first) with both sets' mAP and the gate's decision; per-class plots."""
    evaluated = any(_evaluation(row, key) for row in rows for key, _ in SETS)
    plots = [_set_plot(rows, key, f"AP per class on the {kind}") for key, kind in SETS] if evaluated else []
    return page(
        "models.html",
        links,
        "models",
        "Models",
        lines=[_line(row) for row in reversed(rows)],
        plots=plots,
        na_text=NA_TEXT,
    )
