"""What every benchmark reports: min / median / max over repeated runs, and the machine's load."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Min, median and max of a series of measurements."""

    low: float
    median: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f}, n={self.n})"


def spread(values: Sequence[float]) -> Spread:
    """The min / median / max of ``values`` (at least one)."""
    return Spread(min(values), statistics.median(values), max(values), len(values))


def load() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


def load_text() -> str:
    """The load averages and the core count, for a report line."""
    one, five, fifteen = load()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"
