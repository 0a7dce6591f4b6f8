"""``dataengine model ...``: bring your own detector (``import``) and list the models lineage knows.

:func:`add_model_commands` adds them to the main app with its context and output helpers, so this module
never imports :mod:`dataengine.cli` back.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dataengine.context import Context

ContextFactory = Callable[[], AbstractContextManager["Context"]]
Emit = Callable[[Any, bool, Callable[[Any], str]], None]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def add_model_commands(app: typer.Typer, context: ContextFactory, emit: Emit) -> None:
    """Add ``dataengine model import`` and ``dataengine model list`` to ``app``."""
    model_app = typer.Typer(
        help="Detectors: import one you already have, list them.", no_args_is_help=True, rich_markup_mode=None
    )

    @model_app.command("import")
    def model_import(
        weights: Annotated[
            str | None,
            typer.Argument(
                help="A state_dict file, a transformers folder or a store URI (none: opencv_hog)."
            ),
        ] = None,
        arch: Annotated[
            str,
            typer.Option(help="A torchvision detector, owlv2, grounding_dino, opencv_hog or mmdet."),
        ] = "fasterrcnn_resnet50_fpn",
        classes: Annotated[
            str | None, typer.Option(help="Our class names, comma-separated; default: DATAENGINE_CLASSES.")
        ] = None,
        class_map: Annotated[
            str | None,
            typer.Option(help="SRC=CLASS,...: the model's label ids, names or prompts to our classes."),
        ] = None,
        named_weights: Annotated[
            str | None,
            typer.Option("--weights", help="torchvision's published weights by name, e.g. DEFAULT."),
        ] = None,
        config: Annotated[Path | None, typer.Option(help="The mmdet config file (--arch mmdet).")] = None,
        promote: Annotated[
            bool, typer.Option(help="Promote it when no model is, else when it beats the promoted one.")
        ] = True,
        min_size: Annotated[int | None, typer.Option(min=1, help="Input short side (torchvision).")] = None,
        max_size: Annotated[
            int | None, typer.Option(min=1, help="Input long side limit (torchvision).")
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Import a detector you already have; prints the new model id last."""
        from dataengine.training.model_import import ModelImportRequest, import_model
        from dataengine.vision.class_map import parse_class_map, parse_classes

        with context() as ctx:
            request = ModelImportRequest(
                arch=arch, weights=weights, named_weights=named_weights,
                classes=tuple(parse_classes(classes)) if classes else (),
                class_map=tuple(parse_class_map(class_map)) if class_map else (),
                mmdet_config=str(config) if config else None, promote=promote,
                min_size=min_size, max_size=max_size,
            )  # fmt: skip
            report = import_model(ctx, request)
        emit(report.to_dict(), as_json, lambda _: report.summary())

    @model_app.command("list")
    def model_list(as_json: JsonFlag = False) -> None:
        """Every model: status, origin (trained or imported), and its dataset or source file."""
        from dataengine.lineage.model_registry import list_models

        with context() as ctx, ctx.db.session() as session:
            rows = [
                {
                    "id": m.id, "status": m.status, "origin": m.origin, "dataset_id": m.dataset_id,
                    "source_uri": m.source_uri, "source_sha256": m.source_sha256,
                    "created_at": m.created_at.isoformat(),
                }
                for m in list_models(session)
            ]  # fmt: skip
        emit(rows, as_json, _list_text)

    app.add_typer(model_app, name="model")


def _list_text(rows: list[dict[str, str | None]]) -> str:
    lines = []
    for row in rows:
        trained = row["origin"] == "trained"
        where = row["dataset_id"] if trained else f"{row['source_uri']} (sha256 {row['source_sha256']})"
        lines.append(f"{row['id']}  {row['status']:<9}  {row['origin']:<8}  {where}")
    return "\n".join(lines) or "no models yet"
