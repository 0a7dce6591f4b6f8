"""The state and quality of review across platforms: ``dataengine review report [--since DATE]``.

The quality part answers whether labelling gets cheaper as the models improve: per reviewer and per
model version, the boxes reviewers accepted unchanged, moved (IoU under 0.9), deleted and added, the
autolabels' precision and recall against the reviewed labels, and the reviewers' throughput where the
platform records their time. It is read from the ``quality`` record of each ``reviewed`` event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from dataengine.context import Context
from dataengine.errors import ReviewError
from dataengine.lineage.reviews import review_tasks
from dataengine.lineage.views.activity import review_outcomes
from dataengine.review.platforms import get_platform

TASK_STATUSES = ("exported", "imported", "failed")
_COUNTS = ("accepted", "moved", "deleted", "added", "relabelled")


@dataclass(frozen=True, slots=True)
class OpenReviewTask:
    """A task exported to a platform and not imported yet; ``error`` is its review's last refusal."""

    clip_id: str
    platform: str
    external_id: str | None
    exported_version: int
    exported_at: str
    error: str | None


@dataclass(frozen=True, slots=True)
class ReviewQuality:
    """What the reviews of one reviewer (or of one model version's pre-labels) changed.

    ``precision``: share of the pre-labels kept (accepted or moved); ``recall``: share of the reviewed
    boxes a pre-label found; ``edit_rate``: edits per pre-label. Each is None with nothing to divide by;
    ``seconds`` and ``boxes_per_hour`` only where the platform timed the reviews (Label Studio).
    """

    reviews: int
    accepted: int
    moved: int
    deleted: int
    added: int
    relabelled: int
    precision: float | None
    recall: float | None
    edit_rate: float | None
    seconds: float | None
    boxes_per_hour: float | None


@dataclass(frozen=True, slots=True)
class ReviewReport:
    """Tasks per platform and status, the open tasks, and what the reviews (since ``since``) changed.

    ``reviews`` and ``boxes_changed`` sum the ``reviewed`` events; ``simulated_reviews`` counts those the
    SIMULATED reviewer produced. ``plot`` names the edit-rate chart once one is drawn.
    """

    since: str | None
    platforms: dict[str, dict[str, int]]
    open: list[OpenReviewTask]
    reviews: int
    simulated_reviews: int
    boxes_changed: int
    by_reviewer: dict[str, ReviewQuality]
    by_model: dict[str, ReviewQuality]
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``dataengine review report --json``); ``plot`` only when there is one."""
        doc = asdict(self)
        if doc["plot"] is None:
            del doc["plot"]
        return doc

    def summary(self) -> str:
        """A few human lines."""
        return report_summary(self)

    def with_plot(self, path: Path) -> ReviewReport:
        """The same report naming its edit-rate chart."""
        return replace(self, plot=str(path))


def review_report(ctx: Context, *, since: datetime | None = None) -> ReviewReport:
    """Tasks per platform and status, the open tasks, and what the reviews (since ``since``) changed.

    ``boxes_changed`` and ``reviews`` sum the ``reviewed`` events; ``simulated_reviews`` counts those the
    SIMULATED reviewer produced. An open task's ``error`` is the last refusal of its review, if any.
    ``by_reviewer`` and ``by_model`` aggregate the reviews' quality records.
    """
    with ctx.db.session() as session:
        tasks = review_tasks(session)
        details = review_outcomes(session, since=since)
    platforms: dict[str, dict[str, int]] = {}
    for task in tasks:
        counts = platforms.setdefault(task.platform, dict.fromkeys(TASK_STATUSES, 0))
        counts[task.status] = counts.get(task.status, 0) + 1
    open_tasks = [
        OpenReviewTask(
            clip_id=task.clip_id,
            platform=task.platform,
            external_id=task.external_id,
            exported_version=task.exported_version,
            exported_at=task.exported_at.isoformat(),
            error=task.error,
        )
        for task in tasks
        if task.status == "exported"
    ]
    return ReviewReport(
        since=since.isoformat() if since else None,
        platforms=platforms,
        open=open_tasks,
        reviews=len(details),
        simulated_reviews=sum(1 for d in details if d.get("simulated") is True),
        boxes_changed=sum(int(d.get("boxes_changed", 0)) for d in details),
        by_reviewer=_aggregate(details, lambda d: [str(r) for r in d.get("reviewers") or ["(unknown)"]]),
        by_model=_aggregate(details, lambda d: [",".join(_quality(d).get("models") or []) or "(none)"]),
    )


def open_task_status(ctx: Context, *, platform: str | None = None) -> list[dict[str, Any]]:
    """Each open task of ``platform`` as the platform sees it: ``pending``, ``completed`` or ``missing``."""
    reviewer = get_platform(ctx, platform)
    with ctx.db.session() as session:
        tasks = [
            (task.clip_id, task.external_id, task.exported_version)
            for task in review_tasks(session, platform=reviewer.name, status="exported")
            if task.external_id
        ]
    statuses = reviewer.review_status([external_id for _, external_id, _ in tasks])
    return [
        {
            "clip_id": clip_id,
            "external_id": external_id,
            "exported_version": version,
            "status": statuses.get(external_id, "missing"),
            "url": reviewer.task_url(external_id),
        }
        for clip_id, external_id, version in tasks
    ]


def _quality(details: dict[str, Any]) -> dict[str, Any]:
    quality = details.get("quality")
    if isinstance(quality, dict):
        return quality
    # Reviews imported before quality records existed: their change counts are all there is.
    changes = details.get("changes") if isinstance(details.get("changes"), dict) else {}
    return {key: int(changes.get(key, 0)) for key in _COUNTS}  # type: ignore[union-attr]


def _aggregate(details: list[dict[str, Any]], keys_of: Any) -> dict[str, ReviewQuality]:
    """Counts, precision, recall, edit rate and throughput per key (reviewer or model version)."""
    groups: dict[str, dict[str, Any]] = {}
    for d in details:
        quality = _quality(d)
        for key in keys_of(d):
            group = groups.setdefault(
                key, {**dict.fromkeys(_COUNTS, 0), "reviews": 0, "seconds": 0.0, "timed": 0}
            )
            group["reviews"] += 1
            for count in _COUNTS:
                group[count] += int(quality.get(count, 0))
            if isinstance(quality.get("seconds"), int | float):
                group["seconds"] += float(quality["seconds"])
                group["timed"] += 1
    return {key: _rates(group) for key, group in sorted(groups.items())}


def _rates(group: dict[str, Any]) -> ReviewQuality:
    kept = group["accepted"] + group["moved"]
    before = kept + group["relabelled"] + group["deleted"]
    after = kept + group["relabelled"] + group["added"]
    edits = group["moved"] + group["deleted"] + group["added"] + group["relabelled"]
    timed, seconds = group["timed"], group["seconds"]
    return ReviewQuality(
        **{key: int(group[key]) for key in ("reviews", *_COUNTS)},
        precision=kept / before if before else None,
        recall=kept / after if after else None,
        edit_rate=edits / before if before else None,
        # Throughput only from reviews the platform timed (Label Studio's lead time).
        seconds=seconds if timed else None,
        boxes_per_hour=3600 * after / seconds if timed and seconds > 0 else None,
    )


def report_summary(report: ReviewReport) -> str:
    """A few human lines for a :func:`review_report` result."""
    lines = []
    for platform, counts in sorted(report.platforms.items()):
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines.append(f"{platform}: {parts}")
    if not lines:
        lines.append("no review tasks yet")
    refused = sum(1 for task in report.open if task.error)
    since = f" since {report.since}" if report.since else ""
    lines.append(
        f"{len(report.open)} open task(s) ({refused} with a refused review); "
        f"{report.reviews} review(s) imported{since} ({report.simulated_reviews} SIMULATED), "
        f"{report.boxes_changed} box(es) changed"
    )
    for title, groups in (("reviewer", report.by_reviewer), ("model", report.by_model)):
        for name, g in groups.items():
            lines.append(
                f"  {title} {name}: {g.reviews} review(s), accepted {g.accepted}, moved {g.moved}, "
                f"deleted {g.deleted}, added {g.added}, relabelled {g.relabelled}; "
                f"precision {_pct(g.precision)}, recall {_pct(g.recall)}, edit rate {_pct(g.edit_rate)}"
                + (f", {g.boxes_per_hour:.0f} boxes/h" if g.boxes_per_hour else "")
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def plot_edit_rate(report: ReviewReport, out: str | Path) -> Path:
    """A bar chart of the edit rate per model version, written to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    models = {name: g.edit_rate for name, g in report.by_model.items() if g.edit_rate is not None}
    if not models:
        raise ReviewError("no imported review with pre-labels yet: nothing to plot")
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(models)), 3.5))
    ax.bar(list(models), [100 * rate for rate in models.values()], color="#4c78a8")
    ax.set_ylabel("boxes edited per 100 pre-labels")
    ax.set_xlabel("model version")
    ax.set_title("Review edit rate per model version")
    fig.autofmt_xdate(rotation=20)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
