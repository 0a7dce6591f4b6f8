"""Clips entering each stage per day, from the per-day event counts of a time window.

The counts are ``clip_event_days`` (migration 0004), kept by the lineage writes in the transaction of
the events they count, so a page reads a row per (day, stage, run) of the days it shows rather than
every event of them (a month at 1M clips is 1.6M events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy.orm import Session

from dataengine.lineage.clips import day_stage_counts


@dataclass
class FunnelDay:
    """Clips moved into each stage on one day, and by which runs."""

    day: str
    counts: dict[str, int] = field(default_factory=dict)
    #: stage -> the three runs that moved the most clips [(run_id, clips)], most clips first.
    runs: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: stage -> how many runs moved clips (mapped task instances of one run are one run).
    n_runs: dict[str, int] = field(default_factory=dict)


def funnel_days(session: Session, *, until: date, days: int) -> list[FunnelDay]:
    """Stage entries per (UTC) day for the ``days`` days ending with ``until``, newest first."""
    first = until - timedelta(days=days - 1)
    by_day: dict[str, FunnelDay] = {}
    for count in day_stage_counts(session, first, until, top=3):
        row = by_day.setdefault(count.day.isoformat(), FunnelDay(day=count.day.isoformat()))
        row.counts[count.stage] = count.events
        if count.n_runs:
            row.runs[count.stage] = count.top_runs
            row.n_runs[count.stage] = count.n_runs
    return sorted(by_day.values(), key=lambda row: row.day, reverse=True)
