"""Clips entering each stage per day, counted from the ``clip_events`` of a time window.

``clip_events`` is indexed on ``at`` (migration 0002), so a page reads only the events of the days it
shows: its cost grows with the window's traffic, not with the whole history.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage.models import ClipEvent

_MAP_INDEX = re.compile(r"\[\d+\]$")

Key = tuple[str, str, str]  # day, stage, run id without the map index


@dataclass
class FunnelDay:
    """Clips moved into each stage on one day, and by which runs."""

    day: str
    counts: dict[str, int] = field(default_factory=dict)
    #: stage -> [(run_id, clips)], most clips first.
    runs: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _tally(session: Session, start: datetime, end: datetime) -> Counter[Key]:
    """Counts per (day, stage, run) of the ``ok`` events with ``start <= at < end``."""
    day = func.date(ClipEvent.at)
    query = (
        select(day, ClipEvent.stage, ClipEvent.run_id, func.count())
        .where(ClipEvent.at >= start, ClipEvent.at < end, ClipEvent.status == "ok")
        .group_by(day, ClipEvent.stage, ClipEvent.run_id)
    )
    tally: Counter[Key] = Counter()
    for day_value, stage, run_id, count in session.execute(query):
        # Mapped task instances of one run collapse into the run: the funnel links runs, not tasks.
        tally[(str(day_value), stage, _MAP_INDEX.sub("", run_id or ""))] += int(count)
    return tally


def funnel_days(session: Session, *, until: date, days: int) -> list[FunnelDay]:
    """Stage entries per (UTC) day for the ``days`` days ending with ``until``, newest first."""
    first = until - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    by_day: dict[str, FunnelDay] = {}
    for (day, stage, run_id), count in _tally(session, start, end).items():
        # The database's date() follows its session time zone; keep only the days asked for.
        if not first.isoformat() <= day <= until.isoformat():
            continue
        row = by_day.setdefault(day, FunnelDay(day=day))
        row.counts[stage] = row.counts.get(stage, 0) + count
        if run_id:
            row.runs.setdefault(stage, []).append((run_id, count))
    for row in by_day.values():
        for runs in row.runs.values():
            runs.sort(key=lambda item: (-item[1], item[0]))
    return sorted(by_day.values(), key=lambda row: row.day, reverse=True)
