"""Clips entering each stage per day, kept as a running tally of the append-only ``clip_events``.

``clip_events`` has no index on ``at``, so a time window would scan the whole table on every page
view. Events are never updated or deleted, so the tally of every event up to a watermark id stays
true: each request folds in only the events after the watermark (a primary-key range). Events newer
than ``SETTLE`` are counted on each request but not folded, so an event whose transaction committed
late (its id was taken earlier) is still counted once it appears.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataengine.lineage.models import ClipEvent

SETTLE = timedelta(minutes=10)
_MAP_INDEX = re.compile(r"\[\d+\]$")

Key = tuple[str, str, str]  # day, stage, run id without the map index


@dataclass
class FunnelDay:
    """Clips moved into each stage on one day, and by which runs."""

    day: str
    counts: dict[str, int] = field(default_factory=dict)
    #: stage -> [(run_id, clips)], most clips first.
    runs: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _tally(session: Session, after: int, upto: int | None) -> Counter[Key]:
    """Counts per (day, stage, run) of the ``ok`` events with ``after < id <= upto``."""
    day = func.date(ClipEvent.at)
    query = (
        select(day, ClipEvent.stage, ClipEvent.run_id, func.count())
        .where(ClipEvent.id > after, ClipEvent.status == "ok")
        .group_by(day, ClipEvent.stage, ClipEvent.run_id)
    )
    if upto is not None:
        query = query.where(ClipEvent.id <= upto)
    tally: Counter[Key] = Counter()
    for day_value, stage, run_id, count in session.execute(query):
        tally[(str(day_value), stage, _MAP_INDEX.sub("", run_id or ""))] += int(count)
    return tally


class FunnelTally:
    """The running tally of one lineage database (one per app)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watermark = 0
        self._tally: Counter[Key] = Counter()

    def _fold(self, session: Session) -> None:
        newest = session.scalar(select(func.max(ClipEvent.id))) or 0
        if newest < self._watermark:  # the database was replaced: start again
            self._watermark, self._tally = 0, Counter()
        cutoff = datetime.now(UTC) - SETTLE
        settled = session.scalar(
            select(func.max(ClipEvent.id)).where(ClipEvent.id > self._watermark, ClipEvent.at < cutoff)
        )
        if settled:
            self._tally.update(_tally(session, self._watermark, settled))
            self._watermark = settled

    def days(self, session: Session, *, until: date, days: int) -> list[FunnelDay]:
        """Stage entries per day for the ``days`` days ending with ``until``, newest first."""
        with self._lock:
            self._fold(session)
            tally = self._tally + _tally(session, self._watermark, None)
        first = (until - timedelta(days=days - 1)).isoformat()
        by_day: dict[str, FunnelDay] = {}
        for (day, stage, run_id), count in tally.items():
            if not first <= day <= until.isoformat():
                continue
            row = by_day.setdefault(day, FunnelDay(day=day))
            row.counts[stage] = row.counts.get(stage, 0) + count
            if run_id:
                row.runs.setdefault(stage, []).append((run_id, count))
        for row in by_day.values():
            for runs in row.runs.values():
                runs.sort(key=lambda item: (-item[1], item[0]))
        return sorted(by_day.values(), key=lambda row: row.day, reverse=True)
