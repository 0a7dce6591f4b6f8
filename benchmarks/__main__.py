"""Run every benchmark and print one table: our number, the reference's, and the ratio, in one run.

1. ingest (``benchmarks.ingest``): ``dataengine ingest`` (hash, clips by stream copy, 2 fps JPEGs,
   meta, lineage; process start to exit) of four generated 1080p videos, clean and noisy, 30 and 60 s,
   against the ffmpeg command line segmenting and extracting the same frames, in paired runs.
2. dataset scale (``benchmarks.dataset_scale``): the per-clip Dataset's start-up and memory against one
   COCO file loaded by pycocotools, its loader speed against a bare JPEG decode, DDP on the CPU.
3. monitoring UI: each page of the Airflow plugin with 100,000 clips in the lineage DB (SQLite and
   PostgreSQL) against the 0.5 s page budget (``python -m benchmarks.ui``).
4. autolabel quality: mAP@0.5 of the ensemble with tracking and hindsight against one detector frame by
   frame, same detectors and clips (``python -m benchmarks.autolabel_quality`` prints every metric).
5. autolabel speed: the whole autolabel pipeline's frames/s against the bare forward passes of the same
   models on the same frames (``python -m benchmarks.autolabel_speed``).
6. triggers: the combined triggers' recall of injected rare events at a budget of twice their rate
   against random selection's, and the trigger pass's speed against decoding the same clips
   (``python -m benchmarks.triggers`` prints every trigger, both baselines and the timings).
7. scale-out: ``ingest_daily`` over 8 videos on one Celery worker per core against one worker, and the
   CeleryExecutor's queued-to-start wait per task against the LocalExecutor's, on the local Redis and
   PostgreSQL (``python -m benchmarks.scaleout`` prints every run).
8. day-one pre-labellers: OWLv2 base (960 px) and OpenCV's HOG people detector against a COCO Faster
   R-CNN R50-FPN, frames/s on the CPU on the same real frames (``python -m benchmarks.prelabel_speed``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks import dataset_scale
from benchmarks import ingest as ingest_bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="paired ingest runs per video")
    parser.add_argument(
        "--dataset-scale", type=float, default=0.02, help="fraction of the seed's 1.7M images (1 = full)"
    )
    parser.add_argument("--ui-clips", type=int, default=100_000, help="clips in the monitoring UI benchmark")
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-") as tmp:
        rows += ingest_bench.bench_ingest(Path(tmp), repeats=args.repeats)
        rows += dataset_scale.run(scale=args.dataset_scale)[0]
    from benchmarks.ui import rows as ui_rows  # monitoring pages against the 0.5 s budget

    rows += ui_rows(args.ui_clips)
    from benchmarks import autolabel_quality, autolabel_speed

    rows += autolabel_quality.rows()
    rows += autolabel_speed.rows()
    from benchmarks import triggers as trigger_bench

    rows += trigger_bench.rows()
    from benchmarks import scaleout

    rows += scaleout.run()[0]
    from benchmarks import prelabel_speed

    rows += prelabel_speed.rows()
    print(f"{'benchmark':<58} {'ours':>12} {'reference':>12} {'ratio':>8}  reference")
    for name, ours, reference, what in rows:
        print(f"{name:<58} {ours:>12.1f} {reference:>12.1f} {ours / reference:>8.2f}  {what}")
    print("ratio = ours / reference; higher is better for both rows.")


if __name__ == "__main__":
    main()
