"""``python -m dataengine.airflow.cluster_cli up|down|env-file|trigger``: the cluster mode from ``make``.

``up`` starts the CeleryExecutor cluster of :mod:`dataengine.airflow.cluster` in the foreground (Ctrl-C
stops every process it started, by pid); ``down`` stops a cluster left running; ``env-file`` writes the
shared secrets ``make`` keeps in ``.env`` (never committed); ``trigger`` starts a DAG run through the
REST API after checking that the Celery broker answers, so a run is never created that cannot be queued.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from dataengine.airflow.cluster import (
    ADMIN,
    Cluster,
    ClusterConfig,
    ClusterError,
    Secrets,
    ensure_database,
    new_fernet_key,
)
from dataengine.airflow.rest import AirflowAPI, AirflowAPIError

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DEFAULT_S3_PORT = 9000


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (no quoting, ``#`` comments)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.strip().startswith("#")}


def write_env_file(path: Path) -> list[str]:
    """Add the secrets ``path`` lacks (kept when present); returns the names it added."""
    values = read_env_file(path)
    wanted: dict[str, Callable[[], str]] = {
        "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": new_fernet_key,
        "AIRFLOW_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(12),
        "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(16),
        "MINIO_ROOT_USER": lambda: "dataengine",
        "MINIO_ROOT_PASSWORD": lambda: secrets.token_urlsafe(16),
    }
    added = [name for name in wanted if not values.get(name)]
    if added:
        lines = [f"{name}={wanted[name]()}" for name in added]
        header = (
            []
            if path.exists()
            else ["# Secrets shared by every Airflow process; made by `make`, never committed."]
        )
        with path.open("a") as handle:
            handle.write("\n".join([*header, *lines]) + "\n")
        path.chmod(0o600)
    return added


def broker_reachable(broker_url: str, timeout: float = 3.0) -> str | None:
    """None when the broker answers, else why not.

    A Redis broker must answer a PING (any reply, ``-NOAUTH`` included, proves a server is there); for
    other brokers an accepted connection is enough. An open port alone is not: a proxy or a socket that
    is going away can accept and then hang up.
    """
    parts = urlsplit(broker_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if not parts.scheme.startswith("redis"):
                return None
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    if reply[:1] in (b"+", b"-"):
        return None
    return "the connection was closed without a reply" if not reply else f"not a Redis reply: {reply[:20]!r}"


def local_config(args: argparse.Namespace, env: dict[str, str]) -> ClusterConfig:
    """The cluster of ``make up-cluster``: local PostgreSQL and Redis, S3 from the environment or moto."""
    home = Path(args.home).resolve()
    storage_url = env.get("DATAENGINE_STORAGE_URL", "")
    options: dict[str, object] = {}
    if not storage_url:
        storage_url = "s3://dataengine/store"
        endpoint = f"http://127.0.0.1:{args.s3_port}"
        options = {"key": "local", "secret": "local", "client_kwargs": {"endpoint_url": endpoint}}
    return ClusterConfig(
        home=home,
        metadata_url=env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"{POSTGRES}/dataengine_airflow"),
        lineage_url=env.get("DATAENGINE_DATABASE_URL", f"{POSTGRES}/dataengine"),
        broker_url=env.get("AIRFLOW__CELERY__BROKER_URL", "redis://127.0.0.1:6379/0"),
        storage_url=storage_url,
        storage_options=options,
        secrets=Secrets.from_env(env),
        api_port=args.port,
    )


def start_local_s3(cluster: Cluster, port: int) -> None:
    """moto's S3 server as the store (in memory: set DATAENGINE_STORAGE_URL for data you keep)."""
    moto = str(Path(sys.executable).parent / "moto_server")
    cluster.spawn("s3", [moto, "-H", "127.0.0.1", "-p", str(port)])
    import boto3

    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="local",
        aws_secret_access_key="local", region_name="us-east-1",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket="dataengine")
            return
        except Exception:  # the server is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def up(args: argparse.Namespace) -> int:
    """Start the cluster and wait for Ctrl-C; then stop everything it started."""
    env = {**read_env_file(Path(args.env_file)), **os.environ}
    config = local_config(args, env)
    if problem := broker_reachable(config.broker_url):
        print(f"error: the Celery broker {config.broker_url} is unreachable ({problem})", file=sys.stderr)
        return 1
    for url in (config.metadata_url, config.lineage_url):
        ensure_database(url)
    cluster = Cluster(config)
    stop = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not env.get("DATAENGINE_STORAGE_URL"):
            start_local_s3(cluster, args.s3_port)
        cluster.init()
        cluster.start()
        api = AirflowAPI(config.api_url, ADMIN, config.secrets.admin_password)
        api.wait_healthy()
        cluster.wait_for_workers()
        where = f"password AIRFLOW_ADMIN_PASSWORD in {args.env_file}; logs in {config.home / 'logs'}"
        print(
            f"Airflow (CeleryExecutor) at {config.api_url}: user {ADMIN}, {where}; Ctrl-C stops it",
            flush=True,
        )
        while all(name in cluster.running() for name in ("api-server", "scheduler")):
            time.sleep(2)
        print("error: a cluster service exited; see its log", file=sys.stderr)
        return 1
    except (ClusterError, AirflowAPIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGINT, stop)
        cluster.stop()


def trigger(args: argparse.Namespace) -> int:
    """Trigger a DAG through the REST API, refusing while the broker is down."""
    env = {**read_env_file(Path(args.env_file)), **os.environ}
    broker = env.get("AIRFLOW__CELERY__BROKER_URL", "redis://127.0.0.1:6379/0")
    if problem := broker_reachable(broker):
        print(
            f"error: not triggering {args.dag_id}: the Celery broker {broker} is unreachable ({problem}); "
            "no run was created. Start the broker and trigger again.",
            file=sys.stderr,
        )
        return 1
    api = AirflowAPI(args.api_url, ADMIN, env.get("AIRFLOW_ADMIN_PASSWORD", ""))
    try:
        print(api.trigger(args.dag_id))
    except AirflowAPIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for usage errors, as argparse does)."""
    parser = argparse.ArgumentParser(prog="python -m dataengine.airflow.cluster_cli", description=__doc__)
    parser.add_argument("--env-file", default=".env")
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start the cluster in the foreground")
    up_parser.add_argument("--home", default=".dataengine/cluster")
    up_parser.add_argument("--port", type=int, default=8080)
    up_parser.add_argument("--s3-port", type=int, default=DEFAULT_S3_PORT)
    down_parser = sub.add_parser("down", help="stop a cluster by the pids it recorded")
    down_parser.add_argument("--home", default=".dataengine/cluster")
    sub.add_parser("env-file", help="write the shared secrets into --env-file")
    trigger_parser = sub.add_parser("trigger", help="trigger a DAG run through the REST API")
    trigger_parser.add_argument("dag_id")
    trigger_parser.add_argument("--api-url", default="http://127.0.0.1:8080")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args)
    if args.command == "down":
        Cluster.stop_recorded(Path(args.home).resolve())
        return 0
    if args.command == "env-file":
        added = write_env_file(Path(args.env_file))
        print(f"{args.env_file}: {'added ' + ', '.join(added) if added else 'complete'}")
        return 0
    return trigger(args)


if __name__ == "__main__":
    sys.exit(main())
