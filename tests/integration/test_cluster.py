"""The engine on Airflow's CeleryExecutor: api-server, scheduler, dag-processor, triggerer and two Celery
workers (``default`` and ``gpu`` queues) on this machine's Redis and PostgreSQL, the store on moto's S3.

Synthetic videos land in the bucket's ``landing/``; ``ingest_daily`` and then ``one_click_train`` are
triggered through the REST API and followed to success. Then: which worker ran what, the lineage in
PostgreSQL, the objects in the bucket; and the faults (a worker killed mid-task, the broker down).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cluster_support import RunningCluster, running_cluster

import dataengine.lineage.annotations as lineage_annotations
from dataengine import clips
from dataengine.airflow.cluster import Worker
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ingest
from dataengine.lineage import clips as lineage_clips
from dataengine.lineage import datasets, model_registry, videos
from dataengine.storage import ObjectStore
from dataengine.synthetic import write_landing
from dataengine.synthetic.seed import label_seed_from_ground_truth

pytest.importorskip("airflow.providers.celery", reason="apache-airflow-providers-celery is not installed")

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

ENGINE_ENV = {
    "DATAENGINE_CLIP_SECONDS": "2.0",
    "DATAENGINE_DEVICE": "cpu",
    "DATAENGINE_TRAIN_EPOCHS": "1",
    "DATAENGINE_TRAIN_NPROC": "1",
    "DATAENGINE_TRAIN_WARM_START": "false",
    "OMP_NUM_THREADS": "1",
    # A killed worker's task is declared dead after 20 s without a heartbeat (default 300 s).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: dict[str, Any]) -> Iterator[RunningCluster]:
    bucket = f"cluster-{time.monotonic_ns() % 10**9}"
    s3 = boto3.client(
        "s3", endpoint_url=s3_server["endpoint_url"], aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    with running_cluster(tmp_path_factory.mktemp("cluster"), s3_server, bucket, ENGINE_ENV) as running:
        running.api.wait_for_dags(["ingest_daily", "one_click_train"], timeout=300)
        # Unpaused, the cron DAGs first run for today on an empty store; let those pass.
        for dag_id in ("ingest_daily", "one_click_train"):
            running.api.set_paused(dag_id, False)
        running.api.settle_unpaused(["ingest_daily", "one_click_train"], timeout=300)
        yield running


def engine_context(cluster: RunningCluster, run_id: str) -> Context:
    config = cluster.config
    settings = Settings(
        database_url=config.lineage_url,
        storage_url=config.storage_url,
        storage_options=config.storage_options,
        clip_seconds=2.0,
    )
    return Context.create(settings, run_id=run_id)


def ran_on(cluster: RunningCluster, dag_id: str, run_id: str) -> dict[str, tuple[str, str]]:
    """task_id[map_index] -> (hostname, queue) of the task instances that ran."""
    return {
        f"{ti['task_id']}[{ti['map_index']}]": (ti["hostname"], ti["queue"])
        for ti in cluster.api.task_instances(dag_id, run_id)
        if ti["state"] == "success"
    }


def test_ingest_then_training_run_on_the_workers_of_their_queues(cluster: RunningCluster) -> None:
    ctx = engine_context(cluster, "test/cluster")
    landed = write_landing(ctx.store, n_videos=3, seed=1501, seconds=4.0, with_events=False)
    ingest_run = cluster.api.trigger("ingest_daily")
    assert cluster.api.wait_run("ingest_daily", ingest_run, timeout=400) == "success"
    seeded = label_seed_from_ground_truth(ctx)
    train_run = cluster.api.trigger("one_click_train")
    assert cluster.api.wait_run("one_click_train", train_run, timeout=600) == "success"

    ingest_tasks = ran_on(cluster, "ingest_daily", ingest_run)
    train_tasks = ran_on(cluster, "one_click_train", train_run)
    assert {"discover[-1]", "ingest[0]", "announce_clips[-1]"} <= set(ingest_tasks)
    assert set(train_tasks) == {
        f"{t}[-1]" for t in ("build_dataset", "train", "evaluate", "promote", "summarise")
    }
    everything = {
        **{f"i:{k}": v for k, v in ingest_tasks.items()},
        **{f"t:{k}": v for k, v in train_tasks.items()},
    }
    on_gpu = {task for task, (_, queue) in everything.items() if queue == "gpu"}
    assert on_gpu == {"t:train[-1]", "t:evaluate[-1]"}
    assert {everything[task][0] for task in on_gpu} == {"gpu-worker"}  # the gpu queue: the GPU worker only
    assert {host for task, (host, _) in everything.items() if task not in on_gpu} == {"cpu-worker"}

    # The lineage in PostgreSQL: every landed video, its clips, the seed labels, the dataset, the model.
    with ctx.db.session() as session:
        registered = videos.list_videos(session)
        clip_rows = lineage_clips.list_clips(session)
        versions = [
            v for clip in clip_rows for v in lineage_annotations.annotation_versions(session, clip.id)
        ]
        models = model_registry.list_models(session)
        promoted = model_registry.promoted_model(session)
        dataset = datasets.get_dataset(session, "default")
        events = {e.run_id for clip in clip_rows for e in lineage_clips.clip_events(session, clip.id)}
    assert sorted(v.uri for v in registered) == sorted(ctx.store.uri(k) for k in landed)
    assert {v.status for v in registered} == {"ingested"}
    assert len(clip_rows) >= 2 * len(landed)  # 4 s videos cut into 2 s clips
    assert {clip.video_id for clip in clip_rows} == {v.id for v in registered}
    assert len(versions) == len(clip_rows)
    assert seeded > 0
    assert any(run and run.startswith(f"ingest_daily/{ingest_run}/ingest") for run in events)
    assert promoted is not None
    assert [m.id for m in models] == [promoted.id]
    assert promoted.dataset_id == dataset.id

    # Every object the lineage names is in the bucket.
    uris = [v.uri for v in registered] + [v.uri for v in versions]
    uris += [promoted.checkpoint_uri, dataset.manifest_uri]
    for clip in clip_rows:
        meta = clips.read_meta(ctx.store, clip.id)
        uris += [ctx.store.uri(clips.meta_key(clip.id)), ctx.store.uri(clips.video_key(clip.id))]
        uris += [ctx.store.uri(clips.frame_key(clip.id, i)) for i in meta.sampled]
    missing = [uri for uri in uris if not ctx.store.exists(ctx.store.key_of(uri))]
    assert missing == []
    assert ctx.store.exists(f"models/{promoted.id}/training.json")
    ctx.close()


def checksums(store: ObjectStore, prefix: str) -> dict[str, str]:
    """md5 of every object under ``prefix``, by key; ``meta.json`` with its source named by store key."""
    sums = {}
    for path in store.fs.find(f"{store.root}/{prefix}"):
        data = store.fs.cat_file(path)
        if path.endswith("/meta.json"):  # names the landing video by URI, which differs between stores
            meta = json.loads(data)
            meta["source_uri"] = store.key_of(meta["source_uri"])
            data = json.dumps(meta, sort_keys=True).encode()
        sums[path[len(store.root) + 1 :]] = hashlib.md5(data).hexdigest()
    return sums


def test_a_worker_killed_mid_task_is_retried_on_the_other_worker_with_the_same_result(
    cluster: RunningCluster, tmp_path: Path
) -> None:
    spare = Worker("cpu-worker-2", ("default",), 1)
    cluster.cluster.start_worker(spare)
    cluster.config.workers = (*cluster.config.workers, spare)
    cluster.cluster.wait_for_workers(timeout=300)
    ctx = engine_context(cluster, "test/kill")
    landed = write_landing(
        ctx.store, n_videos=2, seed=1502, seconds=4.0, with_events=False, start_day="2026-11-30"
    )
    run = cluster.api.trigger("ingest_daily")

    victim = wait_for_running(cluster, "ingest_daily", run, "ingest")
    cluster.cluster.kill(victim)  # SIGKILL to the worker, its pool and the task process
    assert cluster.api.wait_run("ingest_daily", run, timeout=400) == "success"

    tries = cluster.api.tries("ingest_daily", run, "ingest", map_index=0)
    assert tries[0]["hostname"] == victim
    assert tries[-1]["state"] == "success"
    assert tries[-1]["hostname"] not in (victim, "gpu-worker")
    # An uninterrupted ingest of the same videos, in-process on SQLite and a local folder.
    reference = Context.create(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'ref.db'}",
            storage_url=f"file://{tmp_path / 'ref'}",
            clip_seconds=2.0,
        ),
        run_id="test/reference",
    )
    for key in landed:
        reference.store.write_bytes(key, ctx.store.read_bytes(key))
    ingest(reference, landed)
    with ctx.db.session() as session, reference.db.session() as ref_session:
        ids = {v.id for v in videos.list_videos(ref_session)}
        got = sorted(
            (c.id, c.n_frames, c.stage) for c in lineage_clips.list_clips(session) if c.video_id in ids
        )
        want = sorted((c.id, c.n_frames, c.stage) for c in lineage_clips.list_clips(ref_session))
    assert got == want
    assert len(want) >= 4
    for clip_id, _, _ in want:
        assert checksums(ctx.store, clips.clip_prefix(clip_id)) == checksums(
            reference.store, clips.clip_prefix(clip_id)
        )
    ctx.close()
    reference.close()


def wait_for_running(cluster: RunningCluster, dag_id: str, run_id: str, task_id: str) -> str:
    """The worker that runs ``task_id`` once it is running."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for ti in cluster.api.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti["hostname"]:
                return str(ti["hostname"])
        time.sleep(0.3)
    raise AssertionError(f"{task_id} never ran")


def test_the_broker_down_at_trigger_time_refuses_the_run_and_leaves_nothing_half_done(
    cluster: RunningCluster,
) -> None:
    ctx = engine_context(cluster, "test/broker")
    before = checksums(ctx.store, "clips")
    runs_before = len(cluster.api.runs("ingest_daily"))
    write_landing(ctx.store, n_videos=1, seed=1503, seconds=2.0, with_events=False, start_day="2026-12-01")
    cluster.link.cut()
    try:
        env = {
            "AIRFLOW__CELERY__BROKER_URL": cluster.config.broker_url,
            "AIRFLOW_ADMIN_PASSWORD": cluster.config.secrets.admin_password,
            "PATH": str(Path(sys.executable).parent),
        }
        result = subprocess.run(
            [sys.executable, "-m", "dataengine.airflow.cluster_cli", "--env-file", "/nonexistent", "trigger",
             "ingest_daily", "--api-url", cluster.config.api_url],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        cluster.link.restore()
    assert result.returncode == 1
    assert f"the Celery broker {cluster.config.broker_url} is unreachable" in result.stderr
    assert "no run was created" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(cluster.api.runs("ingest_daily")) == runs_before
    assert checksums(ctx.store, "clips") == before
    ctx.close()
