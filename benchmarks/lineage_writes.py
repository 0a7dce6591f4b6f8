"""Lineage write throughput: stage events per second into PostgreSQL from one process.

A fresh PostgreSQL database gets ``--clips`` clips (one bulk insert, not timed). Each run then moves
every clip to a new stage the way the stages do it today, ``set_stage`` once per clip inside one
transaction (a SELECT by primary key, an UPDATE and an INSERT of the event: one round trip each), and
commits. The reference is the same number of event rows written by one multi-row ``INSERT`` in one
transaction (what a bulk path per task would cost), measured in the same run. Goal: >= 5,000 events/s.

    python -m benchmarks.lineage_writes [--clips 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from sqlalchemy import insert

from benchmarks.stats import load_text, spread
from benchmarks.ui import _postgres
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.clips import set_stage
from dataengine.lineage.models import Clip, ClipEvent, Video

STAGES = ("scored", "selected", "autolabelled", "in_review", "reviewed", "in_dataset")


def _populate(ctx: Context, n_clips: int) -> list[str]:
    now = datetime.now(UTC)
    ids = [f"{0:016x}-{i:07d}" for i in range(n_clips)]
    with ctx.db.session() as session:
        video = {"id": f"{0:016x}", "uri": "file:///bench.mp4", "sha256": "0" * 64, "status": "ingested"}
        session.execute(insert(Video), [{**video, "created_at": now}])
        session.execute(
            insert(Clip),
            [
                {"id": c, "video_id": f"{0:016x}", "start_frame": i, "end_frame": i + 1, "start_time": 0.0,
                 "n_frames": 1, "uri": f"file:///clips/{c}", "stage": "ingested", "created_at": now,
                 "updated_at": now}
                for i, c in enumerate(ids)
            ],
        )  # fmt: skip
    return ids


def _per_clip(ctx: Context, ids: list[str], stage: str) -> float:
    started = time.perf_counter()
    with ctx.db.session() as session:
        for clip_id in ids:
            set_stage(session, clip_id, stage, run_id="bench", actor="bench", details={"score": 0.5})
    return len(ids) / (time.perf_counter() - started)


def _bulk(ctx: Context, ids: list[str], stage: str) -> float:
    started = time.perf_counter()
    now = datetime.now(UTC)
    with ctx.db.session() as session:
        session.execute(
            insert(ClipEvent),
            [{"clip_id": c, "stage": stage, "status": "ok", "run_id": "bench", "actor": "bench",
              "details": {"score": 0.5}, "at": now} for c in ids],
        )  # fmt: skip
    return len(ids) / (time.perf_counter() - started)


def measure(n_clips: int, repeats: int) -> None:
    """Print events/s of both ways over ``repeats`` alternating runs, with the load."""
    with _postgres() as url:
        if url is None:
            return
        ctx = Context.create(
            Settings(database_url=url, storage_url="file:///tmp/dataengine-bench-lineage"),
            run_id="bench/lineage",
        )
        try:
            ids = _populate(ctx, n_clips)
            before = load_text()
            ours, bulk = [], []
            for repeat in range(repeats):
                stage = STAGES[repeat % len(STAGES)]
                ours.append(_per_clip(ctx, ids, stage))
                bulk.append(_bulk(ctx, ids, stage))
        finally:
            ctx.close()
    print(f"{n_clips} clips, {repeats} runs; {before} before, {load_text()} after")
    print(f"set_stage per clip, one transaction: {spread(ours)} events/s (goal >= 5,000)")
    print(f"one multi-row INSERT of the events:  {spread(bulk)} events/s")
    print(f"ratio per-clip / bulk: {spread([o / b for o, b in zip(ours, bulk, strict=True)])}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lineage_writes", description=__doc__)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    measure(args.clips, args.repeats)


if __name__ == "__main__":
    main()
