"""The lineage view inside the Airflow UI: a small FastAPI app that the plugin mounts at ``/dataengine``.

Every route needs an authenticated Airflow user: plugin apps are not protected automatically.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from dataengine.context import Context


def _context() -> Iterator[Context]:
    ctx = Context.create(run_id="ui/airflow", actor="airflow-ui")
    try:
        yield ctx
    finally:
        ctx.close()


ContextDep = Annotated[Context, Depends(_context)]


def _status(ctx: Context) -> dict[str, Any]:
    from dataengine.lineage.reports import quarantine_list, status_summary

    with ctx.db.session() as session:
        summary = status_summary(session)
        summary["quarantine"] = quarantine_list(session)[-20:]
    return summary


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_status_page(summary: dict[str, Any]) -> str:
    """The HTML overview: clips per stage, models, recent quarantine."""
    stages = _table([[k, v] for k, v in summary["stages"].items()], ["stage", "clips"])
    models = _table(
        [
            [m["id"], m["status"], m["dataset_id"], (m["metrics"].get("eval") or {}).get("map50", "")]
            for m in summary["models"]
        ],
        ["model", "status", "dataset", "mAP@0.5"],
    )
    quarantine = _table(
        [[q["input"], q["stage"], q["reason"]] for q in summary["quarantine"]], ["input", "stage", "reason"]
    )
    return (
        "<html><head><title>dataengine</title><style>body{font-family:sans-serif;margin:2em}"
        "td,th{border:1px solid #ccc;padding:4px 8px}table{border-collapse:collapse;margin-bottom:2em}"
        "</style></head><body>"
        f"<h1>dataengine</h1><p>{summary['videos']} videos, {summary['clips']} clips, "
        f"{summary['quarantined']} quarantined; promoted model: {summary['promoted_model']}</p>"
        f"<h2>Clips per stage</h2>{stages}<h2>Models</h2>{models}<h2>Quarantine</h2>{quarantine}"
        "</body></html>"
    )


def create_app(*, dependencies: list[Any] | None = None) -> FastAPI:
    """The app; ``dependencies`` guard every route (the plugin passes Airflow's authentication)."""
    app = FastAPI(title="dataengine lineage", dependencies=dependencies or [])

    @app.get("/", response_class=HTMLResponse)
    def index(ctx: ContextDep) -> str:
        return render_status_page(_status(ctx))

    @app.get("/api/status")
    def status(ctx: ContextDep) -> dict[str, Any]:
        return _status(ctx)

    @app.get("/api/clips/{clip_id}")
    def clip(clip_id: str, ctx: ContextDep) -> dict[str, Any]:
        from dataengine.errors import NotFoundError
        from dataengine.lineage.reports import clip_history

        try:
            with ctx.db.session() as session:
                return clip_history(session, clip_id)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    return app
