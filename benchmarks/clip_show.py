"""`dataengine clip show` at scale: latency of one clip's history on PostgreSQL with 1M clips.

Fills a throwaway PostgreSQL database with ``--clips`` clips and their history (the monitoring
benchmark's rows, generated inside PostgreSQL: ``benchmarks.ui.populate_postgres``), then asks for the
history of random clips the way the CLI does (``clip_history`` in one ``Context.db.session()``, the
query path of ``dataengine clip show ID --json`` without process start-up), ``--lookups`` per round,
and prints p50 / p99 per round and their min / median / max over ``--rounds`` rounds, with the load.
Target: p99 <= 50 ms at 1M clips. The reference is that budget; each lookup is also timed the way
before issue 17's change (``clip_history_by_rows``: five queries instead of one statement), in turns
with the same clips, and the ratio of the two p99s is printed.

    python -m benchmarks.clip_show [--clips 1000000] [--lookups 2000] [--rounds 5] [--database-url URL]

``--database-url`` measures an already filled database instead (nothing is created or dropped).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.stats import load_text, spread
from benchmarks.ui import CLIPS_PER_VIDEO, _postgres, populate_postgres
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.views.reports import clip_history, clip_history_by_rows

BUDGET_MS = 50.0


def _clip_id(n: int) -> str:
    video, i = divmod(n, CLIPS_PER_VIDEO)
    return f"{video:016x}-{i * 50:07d}"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def one_round(
    ctx: Context, n_clips: int, lookups: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Milliseconds of ``lookups`` histories of random clips, each in its own session like the CLI, by
    ``clip_history`` and by the five queries it replaced (in turns, which first alternating)."""
    times: dict[bool, list[float]] = {True: [], False: []}
    for n in range(lookups):
        clip_id = _clip_id(rng.randrange(n_clips))
        for new in (n % 2 == 0, n % 2 == 1):
            history_of = clip_history if new else clip_history_by_rows
            started = time.perf_counter()
            with ctx.db.session() as session:
                history = history_of(session, clip_id)
            times[new].append(1000 * (time.perf_counter() - started))
            assert history["clip"]["clip_id"] == clip_id
            assert len(history["events"]) >= 3
    return times[True], times[False]


@contextmanager
def _database(url: str | None, n_clips: int) -> Iterator[str | None]:
    if url is not None:
        yield url
        return
    with _postgres() as fresh:
        if fresh is not None:
            ctx = Context.create(Settings(database_url=fresh, storage_url="memory://bench"), run_id="bench")
            try:
                started = time.perf_counter()
                populate_postgres(ctx, n_clips)
                print(f"{n_clips} clips filled in {time.perf_counter() - started:.0f} s")
            finally:
                ctx.close()
        yield fresh


def measure(n_clips: int, lookups: int, rounds: int, url: str | None) -> None:
    """Print p50 / p99 per round and over rounds."""
    with _database(url, n_clips) as database_url:
        if database_url is None:
            return
        ctx = Context.create(
            Settings(database_url=database_url, storage_url="memory://bench"),
            run_id="bench",
            migrate=url is None,
        )
        try:
            rng = random.Random(17)
            p50s, p99s, before_p50s, before_p99s = [], [], [], []
            print(f"{n_clips} clips, {lookups} random clips per round; {load_text()}")
            for n in range(rounds):
                times, before = one_round(ctx, n_clips, lookups, rng)
                p50s.append(statistics.median(times))
                p99s.append(percentile(times, 0.99))
                before_p50s.append(statistics.median(before))
                before_p99s.append(percentile(before, 0.99))
                print(
                    f"  round {n + 1}: p50 {p50s[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms, "
                    f"max {max(times):.1f} ms; "
                    f"five queries: p50 {before_p50s[-1]:.1f} ms, p99 {before_p99s[-1]:.1f} ms, "
                    f"max {max(before):.1f} ms"
                )
                print(f"    {load_text()}")
        finally:
            ctx.close()
    print(f"clip show (in-process, one session per lookup) p50: {spread(p50s)} ms")
    print(f"clip show p99: {spread(p99s)} ms (budget {BUDGET_MS:.0f} ms)")
    print(f"ratio budget / p99: {spread([BUDGET_MS / p for p in p99s])} (above 1 is within the budget)")
    print(f"five queries (before): p50 {spread(before_p50s)} ms, p99 {spread(before_p99s)} ms")
    ratios = [b / p for b, p in zip(before_p99s, p99s, strict=True)]
    print(f"ratio p99 five queries / one statement, per round: {spread(ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clip_show", description=__doc__)
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    measure(args.clips, args.lookups, args.rounds, args.database_url)


if __name__ == "__main__":
    main()
