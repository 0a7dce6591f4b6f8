"""Airflow with the CeleryExecutor on this machine: the same services the compose file runs, as processes.

``make up-cluster`` and the cluster test start an api-server, a scheduler, a dag-processor, a triggerer
and Celery workers (one on the ``default`` queue, one on ``gpu``) on the local Redis (broker) and
PostgreSQL (Airflow's metadata and the lineage, in separate databases), with the object store on S3.
:data:`SERVICES` and :func:`worker_command` are the argv after ``airflow``; docker-compose.yaml runs the
same ones, which tests/integration/test_compose.py checks. Every process starts in a session of its
own and its pid is written under ``<home>/pids``: :meth:`Cluster.stop` ends each by that pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: argv of the Airflow services after ``airflow``; the API port comes from ``AIRFLOW__API__PORT``.
SERVICES: dict[str, list[str]] = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
}
#: What every service needs before it starts (compose's ``airflow-init``).
INIT_COMMANDS: list[list[str]] = [["db", "migrate"]]
REPO = Path(__file__).resolve().parents[3]
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Worker:
    """One Celery worker: its name (``<name>@<host>`` in Celery), the queues it takes, its task slots."""

    name: str
    queues: tuple[str, ...]
    concurrency: int = 1


#: A CPU worker on the default queue and a GPU worker that takes only the gpu queue.
DEFAULT_WORKERS = (Worker("cpu-worker", ("default",), 2), Worker("gpu-worker", ("gpu",), 1))


def worker_command(worker: Worker) -> list[str]:
    """argv after ``airflow`` of a Celery worker; ``%h`` is Celery's placeholder for the host name."""
    return [
        "celery", "worker", "--queues", ",".join(worker.queues),
        "--concurrency", str(worker.concurrency), "--celery-hostname", f"{worker.name}@%h",
    ]  # fmt: skip


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the local cluster: the worker's name, so a task instance says which
    of several workers on one machine ran it; the machine's FQDN elsewhere."""
    return os.environ.get("DATAENGINE_WORKER_NAME") or socket.getfqdn()


@dataclass(frozen=True, slots=True)
class Secrets:
    """What every Airflow process must share: tokens signed by one are checked by the others."""

    jwt_secret: str
    api_secret_key: str
    fernet_key: str
    admin_password: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Secrets:
        """Values from ``env`` (the generated ``.env``), new random ones for what it lacks."""
        return cls(
            jwt_secret=env.get("AIRFLOW__API_AUTH__JWT_SECRET") or secrets.token_urlsafe(32),
            api_secret_key=env.get("AIRFLOW__API__SECRET_KEY") or secrets.token_urlsafe(32),
            fernet_key=env.get("AIRFLOW__CORE__FERNET_KEY") or new_fernet_key(),
            admin_password=env.get("AIRFLOW_ADMIN_PASSWORD") or secrets.token_urlsafe(12),
        )


def new_fernet_key() -> str:
    """A Fernet key (32 random bytes, URL-safe base64), as ``cryptography`` makes them."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@dataclass
class ClusterConfig:
    """Where the cluster keeps its files and which services it talks to."""

    home: Path
    metadata_url: str
    lineage_url: str
    broker_url: str
    storage_url: str
    secrets: Secrets
    storage_options: dict[str, object] = field(default_factory=dict)
    api_port: int = 8080
    workers: tuple[Worker, ...] = DEFAULT_WORKERS
    #: Prefix of every broker key, so several clusters can share one Redis database.
    broker_key_prefix: str = ""
    paused_at_creation: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The REST API's root."""
        return f"http://127.0.0.1:{self.api_port}"


def airflow_env(config: ClusterConfig) -> dict[str, str]:
    """The environment every process of the cluster shares (each worker adds its name and log port)."""
    home = config.home / "airflow"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(config.paused_at_creation),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dataengine.airflow.cluster.worker_hostname",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": config.metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": config.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + config.metadata_url,
        # Workers on other machines reach the API server here, never at localhost (their own).
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{config.api_url}/execution/",
        "AIRFLOW__API__BASE_URL": config.api_url,
        "AIRFLOW__API__PORT": str(config.api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": config.secrets.jwt_secret,
        "AIRFLOW__API__SECRET_KEY": config.secrets.api_secret_key,
        "AIRFLOW__CORE__FERNET_KEY": config.secrets.fernet_key,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "DATAENGINE_DATABASE_URL": config.lineage_url,
        "DATAENGINE_STORAGE_URL": config.storage_url,
        "DATAENGINE_STORAGE_OPTIONS": json.dumps(config.storage_options),
    }
    if config.broker_key_prefix:
        env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] = config.broker_key_prefix
    return {**env, **config.extra_env}


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Cluster:
    """Starts, watches and stops the processes of one cluster."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.env = {**os.environ, **airflow_env(config)}
        self.logs = config.home / "logs"
        self.pids = config.home / "pids"
        self.airflow = str(Path(sys.executable).parent / "airflow")

    # Set-up -----------------------------------------------------------------------------------

    def init(self) -> None:
        """Migrate Airflow's database, create the gpu pool (a slot per GPU worker), migrate the lineage."""
        for directory in (self.logs, self.pids, self.config.home / "airflow"):
            directory.mkdir(parents=True, exist_ok=True)
        passwords = self.config.home / "airflow" / "passwords.json"
        passwords.write_text(json.dumps({ADMIN: self.config.secrets.admin_password}))
        for argv in INIT_COMMANDS:
            self._run_once([self.airflow, *argv], "init")
        gpu_slots = sum(1 for w in self.config.workers if "gpu" in w.queues) or 1
        self._run_once([self.airflow, "pools", "set", "gpu", str(gpu_slots), "GPU slots"], "init")
        self._run_once([str(Path(sys.executable).parent / "dataengine"), "init"], "init")

    def _run_once(self, argv: list[str], log_name: str) -> None:
        with (self.logs / f"{log_name}.log").open("a") as log:
            code = subprocess.run(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            tail = (self.logs / f"{log_name}.log").read_text()[-2000:]
            raise ClusterError(f"`{' '.join(argv[-3:])}` failed with exit code {code}:\n{tail}")

    # Processes --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every service and worker (each in a session of its own), recording their pids."""
        for name, argv in SERVICES.items():
            self.spawn(name, [self.airflow, *argv])
        for worker in self.config.workers:
            self.start_worker(worker)

    def start_worker(self, worker: Worker) -> int:
        """Start one Celery worker; returns its pid."""
        env = {
            "DATAENGINE_WORKER_NAME": worker.name,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
        return self.spawn(worker.name, [self.airflow, *worker_command(worker)], env)

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> int:
        """Start ``argv`` as ``name``, logging to ``<home>/logs/<name>.log``; returns its pid."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("a") as log:
            proc = subprocess.Popen(
                argv, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.config.home,
            )  # fmt: skip
        (self.pids / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def running(self) -> dict[str, int]:
        """The recorded processes that are still alive, by name."""
        alive = {}
        for pid_file in sorted(self.pids.glob("*.pid")) if self.pids.is_dir() else []:
            pid = int(pid_file.read_text())
            if _alive(pid):
                alive[pid_file.stem] = pid
        return alive

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group of ``name`` (its pid): the service and every child."""
        pid = int((self.pids / f"{name}.pid").read_text())
        _signal_group(pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every recorded process by its pid: SIGTERM to its group, SIGKILL after ``timeout``."""
        stop_recorded(self.pids, timeout)

    @staticmethod
    def stop_recorded(home: Path, timeout: float = 30.0) -> None:
        """Stop the processes a cluster in ``home`` recorded (``make down-cluster``)."""
        stop_recorded(home / "pids", timeout)

    def log_text(self, name: str) -> str:
        """What ``name`` wrote so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_workers(self, timeout: float = 180.0) -> None:
        """Until every worker says it is ready (Celery's ``celery@name ready.`` line)."""
        deadline = time.monotonic() + timeout
        waiting = [w.name for w in self.config.workers]
        while waiting:
            waiting = [
                n for n in waiting if f"{n}@" not in self.log_text(n) or " ready." not in self.log_text(n)
            ]
            dead = [n for n in waiting if n not in self.running()]
            if dead:
                raise ClusterError(f"worker {dead[0]} exited:\n{self.log_text(dead[0])[-2000:]}")
            if waiting and time.monotonic() > deadline:
                raise ClusterError(f"workers {waiting} not ready after {timeout:.0f} s")
            time.sleep(0.5)


def stop_recorded(pid_dir: Path, timeout: float = 30.0) -> None:
    """SIGTERM to the process group of every pid in ``pid_dir``, SIGKILL to those left after ``timeout``."""
    pids = {name: int(p.read_text()) for name, p in _pid_files(pid_dir)}
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_group_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, pid in pids.items():
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
        (pid_dir / f"{name}.pid").unlink(missing_ok=True)


class ClusterError(RuntimeError):
    """A cluster process did not start or an Airflow command failed."""


def _pid_files(folder: Path) -> list[tuple[str, Path]]:
    return [(p.stem, p) for p in sorted(folder.glob("*.pid"))] if folder.is_dir() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_alive(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == pgid)


def _pgid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().split(")")[-1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database that ``url`` names, unless it exists."""
    from dataengine.lineage.admin import create_database_if_missing

    create_database_if_missing(url)
