"""Scale-out: the same 8 videos through ``ingest_daily`` on 1 Celery worker and on one per core, and the
per-task scheduling overhead of the CeleryExecutor against the LocalExecutor, on the local Redis and
PostgreSQL with moto's S3 server.

Every run ingests 8 fresh synthetic videos of the same size and length, one mapped ingest task per video
(``DATAENGINE_INGEST_BATCH_SIZE=1``) so the tasks can spread over the workers, triggered through the REST
API; its time is the DAG run's, from start to end as Airflow records them. Each worker has one task slot.
The overhead row is, with one task slot, the run's wall time during which none of its tasks was running,
per task instance: the executor's hand-off (Celery through Redis to a worker, or the LocalExecutor's own
process pool) plus the scheduler's loop, against the task processes' own time.

    python -m benchmarks.scaleout [--repeats 2] [--videos 8]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from dataengine.airflow.cluster import Cluster, ClusterConfig, Secrets, Worker, ensure_database, free_port
from dataengine.airflow.rest import AirflowAPI
from dataengine.storage import ObjectStore
from dataengine.synthetic import write_landing

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
Row = tuple[str, float, float, str]
ENGINE_ENV = {"DATAENGINE_CLIP_SECONDS": "2.0", "DATAENGINE_INGEST_BATCH_SIZE": "1", "OMP_NUM_THREADS": "1"}


@contextmanager
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server in a child process, with a bucket."""
    port = free_port()
    moto = str(Path(sys.executable).parent / "moto_server")
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    try:
        for _ in range(100):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # still starting
                time.sleep(0.2)
        yield {
            "key": "bench",
            "secret": "bench",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def cluster(
    home: Path, s3: dict[str, Any], *, executor: str, workers: tuple[Worker, ...]
) -> Iterator[tuple[Cluster, AirflowAPI]]:
    """A cluster with its own databases, Redis database 15 under a key prefix of its own."""
    token = secrets.token_hex(4)
    config = ClusterConfig(
        home=home,
        metadata_url=f"{POSTGRES}/bench_airflow_{token}",
        lineage_url=f"{POSTGRES}/bench_lineage_{token}",
        broker_url="redis://127.0.0.1:6379/15",
        storage_url="s3://bench/store",
        storage_options=s3,
        secrets=Secrets.from_env({}),
        api_port=free_port(),
        workers=workers,
        broker_key_prefix=f"bench-{token}:",
        paused_at_creation=True,
        extra_env={
            **ENGINE_ENV,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "1" if executor == "LocalExecutor" else "32",
        },
    )
    ensure_database(config.metadata_url)
    ensure_database(config.lineage_url)
    running = Cluster(config)
    api = AirflowAPI(config.api_url, "admin", config.secrets.admin_password)
    try:
        running.init()
        running.start()
        api.wait_healthy(timeout=300)
        if workers:
            running.wait_for_workers(timeout=300)
        api.wait_for_dags(["ingest_daily"], timeout=300)
        api.set_paused("ingest_daily", False)
        api.settle_unpaused(["ingest_daily"], timeout=300)
        yield running, api
    finally:
        api.close()
        running.stop()
        _drop(f"bench_airflow_{token}", f"bench_lineage_{token}")


def _drop(*names: str) -> None:
    from dataengine.lineage.admin import drop_database

    for name in names:
        drop_database(f"{POSTGRES}/{name}")


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def ingest_round(api: AirflowAPI, store: ObjectStore, *, seed: int, n_videos: int) -> tuple[float, float]:
    """One ``ingest_daily`` run over ``n_videos`` new videos: its wall seconds, and the seconds per task
    instance during which no task of the run was running (the executor's scheduling overhead)."""
    day = f"2026-10-{seed % 28 + 1:02d}"
    write_landing(store, n_videos=n_videos, seed=seed, seconds=4.0, with_events=False, start_day=day)
    run_id = api.trigger("ingest_daily")
    state = api.wait_run("ingest_daily", run_id, timeout=1800)
    if state != "success":
        raise RuntimeError(f"ingest_daily {run_id} ended {state}")
    run = api.request("GET", f"/dags/ingest_daily/dagRuns/{run_id}")
    spans = sorted(
        (datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
        for ti in api.task_instances("ingest_daily", run_id)
        if ti["state"] == "success" and ti["start_date"] and ti["end_date"]
    )
    busy, covered_to = 0.0, datetime.fromisoformat(run["start_date"])
    for start, end in spans:  # the union of the task intervals
        if end > covered_to:
            busy += (end - max(start, covered_to)).total_seconds()
            covered_to = end
    wall = _seconds(run["start_date"], run["end_date"])
    return wall, (wall - busy) / max(1, len(spans))


def _stats(values: list[float]) -> str:
    return f"min {min(values):.1f} / median {statistics.median(values):.1f} / max {max(values):.1f}"


def run(repeats: int = 2, n_videos: int = 8) -> tuple[list[Row], dict[str, Any]]:
    """The scale-out rows and the raw numbers."""
    cores = os.cpu_count() or 2
    one = Worker("worker-1", ("default",), 1)
    extra = [Worker(f"worker-{i}", ("default",), 1) for i in range(2, cores + 1)]
    raw: dict[str, Any] = {"load_before": os.getloadavg(), "cores": cores}
    seed = 7000
    with tempfile.TemporaryDirectory(prefix="dataengine-scaleout-") as tmp, s3_server() as s3:
        store = ObjectStore("s3://bench/store", **s3)
        with cluster(Path(tmp) / "celery", s3, executor="CeleryExecutor", workers=(one,)) as (running, api):
            for _ in range(repeats):
                for arm in ("1", "n"):  # interleaved, so a change in the machine's load hits both arms
                    started = [running.start_worker(w) for w in extra] if arm == "n" else []
                    if started:
                        running.config.workers = (one, *extra)
                        running.wait_for_workers(timeout=300)
                    seed += 1
                    wall, idle = ingest_round(api, store, seed=seed, n_videos=n_videos)
                    raw.setdefault(f"celery_{arm}", []).append(wall)
                    raw.setdefault(f"celery_{arm}_idle", []).append(idle)
                    for w in extra if arm == "n" else []:
                        running.kill(w.name, 15)
                    running.config.workers = (one,)
                    time.sleep(3)
        with cluster(Path(tmp) / "local", s3, executor="LocalExecutor", workers=()) as (_, api):
            for _ in range(repeats):
                seed += 1
                wall, idle = ingest_round(api, store, seed=seed, n_videos=n_videos)
                raw.setdefault("local_1", []).append(wall)
                raw.setdefault("local_1_idle", []).append(idle)
    raw["load_after"] = os.getloadavg()
    speedup = statistics.median(raw["celery_1"]) / statistics.median(raw["celery_n"])
    celery_idle = statistics.median(raw["celery_1_idle"])
    local_idle = statistics.median(raw["local_1_idle"])
    rows: list[Row] = [
        (
            f"ingest_daily, {n_videos} videos: {cores} Celery workers vs 1 (speed-up)",
            speedup,
            1.0,
            "1 worker",
        ),
        ("per-task scheduling overhead, 1 slot (s, lower better)", celery_idle, local_idle, "LocalExecutor"),
    ]
    raw["speedup"] = speedup
    return rows, raw


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--videos", type=int, default=8)
    args = parser.parse_args()
    rows, raw = run(args.repeats, args.videos)
    print(f"machine: {raw['cores']} cores, load {raw['load_before']} before, {raw['load_after']} after")
    for key in ("celery_1", "celery_n", "local_1"):
        print(f"{key:<10} run wall seconds: {_stats(raw[key])}  ({', '.join(f'{v:.1f}' for v in raw[key])})")
    for key in ("celery_1_idle", "celery_n_idle", "local_1_idle"):
        print(f"{key:<14} seconds per task with no task running: {_stats(raw[key])}")
    for name, ours, reference, what in rows:
        print(f"{name:<62} {ours:>8.2f} {reference:>8.2f} {ours / reference:>6.2f}  vs {what}")


if __name__ == "__main__":
    main()
