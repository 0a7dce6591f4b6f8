"""The state of review across platforms: ``dataengine review report``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dataengine.context import Context
from dataengine.lineage import repository as repo
from dataengine.lineage.models import ClipEvent

TASK_STATUSES = ("exported", "imported", "failed")


def review_report(ctx: Context) -> dict[str, Any]:
    """Tasks per platform and status, the open tasks, and the boxes reviews have changed so far.

    ``boxes_changed`` and ``reviews`` sum the ``reviewed`` events; ``simulated_reviews`` counts those the
    SIMULATED reviewer produced. An open task's ``error`` is the last refusal of its review, if any.
    """
    with ctx.db.session() as session:
        tasks = repo.review_tasks(session)
        events = list(
            session.scalars(select(ClipEvent).where(ClipEvent.stage == "reviewed", ClipEvent.status == "ok"))
        )
    platforms: dict[str, dict[str, int]] = {}
    for task in tasks:
        counts = platforms.setdefault(task.platform, dict.fromkeys(TASK_STATUSES, 0))
        counts[task.status] = counts.get(task.status, 0) + 1
    open_tasks = [
        {
            "clip_id": task.clip_id,
            "platform": task.platform,
            "external_id": task.external_id,
            "exported_version": task.exported_version,
            "exported_at": task.exported_at.isoformat(),
            "error": task.error,
        }
        for task in tasks
        if task.status == "exported"
    ]
    return {
        "platforms": platforms,
        "open": open_tasks,
        "reviews": len(events),
        "simulated_reviews": sum(1 for event in events if event.details.get("simulated") is True),
        "boxes_changed": sum(int(event.details.get("boxes_changed", 0)) for event in events),
    }


def report_summary(report: dict[str, Any]) -> str:
    """A few human lines for a :func:`review_report` result."""
    lines = []
    for platform, counts in sorted(report["platforms"].items()):
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"{platform}: {parts}")
    if not lines:
        lines.append("no review tasks yet")
    refused = sum(1 for task in report["open"] if task["error"])
    lines.append(
        f"{len(report['open'])} open task(s) ({refused} with a refused review); "
        f"{report['reviews']} review(s) imported ({report['simulated_reviews']} SIMULATED), "
        f"{report['boxes_changed']} box(es) changed"
    )
    return "\n".join(lines)
