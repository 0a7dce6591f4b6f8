"""`make up`: the API server answers before any component that launches tasks starts (Airflow 3 itself)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def _task_instances(db: Path) -> list[tuple[str, str, str | None, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("select dag_id, task_id, state, try_number from task_instance").fetchall()
        except sqlite3.OperationalError:
            return []
    return [(str(a), str(b), c, int(d)) for a, b, c, d in rows]


def test_no_task_starts_before_the_api_server_is_healthy(tmp_path: Path) -> None:
    home, port = tmp_path / "airflow", _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "DATAENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}",
        "DATAENGINE_STORAGE_URL": f"file://{tmp_path / 'store'}",
    }
    log = tmp_path / "up.log"
    with log.open("w") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "dataengine.airflow.up", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(lambda: "Airflow: http://localhost" in log.read_text(), 600, "the launcher to be ready")
        # The scheduled DAGs (review_import @hourly, ingest_daily @daily, ...) run as soon as they are parsed.
        db = home / "airflow.db"
        _wait_for(
            lambda: any(state in ("success", "skipped") for _, task, state, _ in _task_instances(db)
                        if task == "import_reviews"),
            600, "the first scheduled task",
        )  # fmt: skip
    finally:
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=120)
    text = log.read_text()
    lines = [line.split("|", 1)[1].strip() for line in text.splitlines() if line.lstrip().startswith("up |")]
    healthy = next(i for i, line in enumerate(lines) if line.startswith("API server healthy"))
    started = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"started (\S+) ", line))}
    assert started["api-server"] < healthy
    assert all(started[name] > healthy for name in ("scheduler", "dag-processor", "triggerer"))
    ran = [ti for ti in _task_instances(home / "airflow.db") if ti[3] >= 1]
    assert ran
    assert all(tries == 1 and state != "up_for_retry" for _, _, state, tries in ran), ran
    task_logs = "\n".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log"))
    assert "Connection refused" not in task_logs
    assert code == 0
    pids = [int(m) for m in re.findall(r"started \S+ \(pid (\d+)\)", text)]
    assert len(pids) == 4
    assert [pid for pid in pids if _runs_with(pid, str(home))] == []


def _runs_with(pid: int, airflow_home: str) -> bool:
    """Whether process ``pid`` is alive with this AIRFLOW_HOME (a reused pid belongs to another)."""
    try:
        return f"AIRFLOW_HOME={airflow_home}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
