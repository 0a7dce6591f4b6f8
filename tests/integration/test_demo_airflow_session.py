"""The demo's airflow commands through one long-lived airflow CLI process (real Airflow)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dataengine.demo import AirflowRunner
from dataengine.errors import DataEngineError


def test_commands_share_one_airflow_process_each_with_its_log_and_failures_are_named(tmp_path: Path) -> None:
    echoed: list[str] = []
    runner = AirflowRunner(tmp_path, {}, echoed.append)
    try:
        runner.setup()  # db migrate, then the gpu pool: two commands, one process
        pid = runner.pid
        assert pid is not None
        runner.call(["pools", "get", "gpu", "--output", "plain"], "pool")
        assert runner.pid == pid
        assert "GPU slots for autolabel and training" in (tmp_path / "airflow-logs" / "pool.log").read_text()

        with pytest.raises(DataEngineError, match=r"`airflow dags test no_such_dag` failed \(1\)") as failed:
            runner.call(["dags", "test", "no_such_dag"], "missing")
        assert "no_such_dag" in str(failed.value)
        runner.call(["pools", "get", "gpu"], "again")  # the session outlives a failed command
        assert runner.pid == pid

        os.kill(pid, signal.SIGKILL)
        with pytest.raises(DataEngineError, match=r"the airflow process ended \(exit -9\)"):
            runner.call(["pools", "get", "gpu"], "after-kill")
        runner.call(["pools", "get", "gpu", "--output", "plain"], "restarted")  # a new session starts
        assert runner.pid not in (None, pid)
    finally:
        runner.close()
    assert runner.pid is None
