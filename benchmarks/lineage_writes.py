"""Lineage write throughput: stage events per second into PostgreSQL from one process.

A fresh PostgreSQL database gets ``--clips`` clips (one bulk insert, not timed). Each run then moves
clips to a new stage both ways, alternating which way goes first:

- the reference, ``set_stage`` once per clip inside one transaction (a SELECT by primary key, an UPDATE
  and an INSERT of the event: one round trip each), as every stage did it before the bulk path, on the
  first ``--reference-clips`` clips (its cost per event does not depend on how many: three round trips
  each; fewer keeps the run short at 60-100 events/s);
- ours, ``set_stages`` with one change per clip of all ``--clips`` clips in one transaction (one lookup,
  one UPDATE per target stage, one INSERT of every event), as trigger selection and dataset build do it.

Both write the same rows (``tests/integration/test_lineage_bulk.py``). Each figure includes the commit.
Goal: >= 5,000 events/s.

    python -m benchmarks.lineage_writes [--clips 5000] [--reference-clips 1000] [--repeats 5]
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
from dataengine.lineage.clips import ClipChange, set_stage, set_stages
from dataengine.lineage.models import Clip, Video

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


def _details(i: int) -> dict[str, object]:
    # The size of a selection event's details (rank, scores, budget), different per clip.
    return {"rank": i, "score": i / 7, "budget": 500, "trigger": "uncertainty", "weighted_scores": {"a": 0.5}}


def _per_clip(ctx: Context, ids: list[str], stage: str) -> float:
    started = time.perf_counter()
    with ctx.db.session() as session:
        for i, clip_id in enumerate(ids):
            set_stage(session, clip_id, stage, run_id="bench", actor="bench", details=_details(i))
    return len(ids) / (time.perf_counter() - started)


def _bulk(ctx: Context, ids: list[str], stage: str) -> float:
    started = time.perf_counter()
    with ctx.db.session() as session:
        changes = [ClipChange(clip_id, stage, _details(i)) for i, clip_id in enumerate(ids)]
        set_stages(session, changes, run_id="bench", actor="bench")
    return len(ids) / (time.perf_counter() - started)


def measure(n_clips: int, n_reference: int, repeats: int) -> None:
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
            loads = [load_text()]
            ours, reference = [], []
            for repeat in range(repeats):
                first, second = STAGES[(2 * repeat) % len(STAGES)], STAGES[(2 * repeat + 1) % len(STAGES)]
                if repeat % 2:
                    ours.append(_bulk(ctx, ids, first))
                    reference.append(_per_clip(ctx, ids[:n_reference], second))
                else:
                    reference.append(_per_clip(ctx, ids[:n_reference], first))
                    ours.append(_bulk(ctx, ids, second))
                loads.append(load_text())
        finally:
            ctx.close()
    print(f"{n_clips} events per bulk run, {n_reference} per reference run, {repeats} runs, PostgreSQL")
    for line in loads:
        print(f"  {line}")
    print(f"set_stages, bulk (ours):       {spread(ours)} events/s (goal >= 5,000)")
    print(f"set_stage per clip (reference): {spread(reference)} events/s")
    print(f"ratio bulk / per clip:          {spread([o / r for o, r in zip(ours, reference, strict=True)])}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lineage_writes", description=__doc__)
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--reference-clips", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    measure(args.clips, min(args.reference_clips, args.clips), args.repeats)


if __name__ == "__main__":
    main()
