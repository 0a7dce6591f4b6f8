"""``make up``: Airflow's components in the order that keeps the first tasks from failing.

``airflow standalone`` starts the scheduler, the DAG processor, the triggerer and the API server at once.
Airflow 3 tasks report to the API server (the Execution API), so a task the scheduler launches before the
API server answers fails with ``Connection refused`` and then waits out its retry delay. This launcher
migrates the metadata database, starts the API server, waits until its health endpoint answers, and only
then starts the scheduler, the DAG processor and the triggerer. Ctrl-C (or SIGTERM) stops them all; if
one of them dies, the others are stopped and the exit code says so.

Runs without importing Airflow: every component is its own ``airflow`` process.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HEALTH_PATH = "/api/v2/monitor/health"
#: Components started once the API server is healthy, in this order.
AFTER_API = ("scheduler", "dag-processor", "triggerer")
EXIT_STARTUP_FAILED = 3


@dataclass
class Launcher:
    """The running components and where their output goes."""

    airflow: str
    port: int
    env: dict[str, str]
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, name: str, line: str) -> None:
        """One line of output, prefixed with the component that wrote it."""
        with self._lock:
            self.out.write(f"{name:>13} | {line.rstrip()}\n")
            self.out.flush()

    def run(self, *args: str) -> None:
        """Run an ``airflow`` command to completion (migrations, pools); raise on failure."""
        self.say("up", f"airflow {' '.join(args)}")
        done = subprocess.run(
            [self.airflow, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-2000:]
            raise RuntimeError(f"`airflow {' '.join(args)}` failed with exit code {done.returncode}:\n{tail}")

    def start(self, name: str, *args: str) -> None:
        """Start a long-running component and stream its output."""
        process = subprocess.Popen(
            [self.airflow, name, *args], env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.processes[name] = process
        self.say("up", f"started {name} (pid {process.pid})")
        threading.Thread(target=self._pump, args=(name, process), daemon=True).start()

    def _pump(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.say(name, line)

    def wait_healthy(self, timeout: float) -> None:
        """Block until the API server answers its health endpoint with HTTP 200."""
        url = f"http://127.0.0.1:{self.port}{HEALTH_PATH}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            api = self.processes.get("api-server")
            if api is not None and api.poll() is not None:
                raise RuntimeError(f"the API server exited with code {api.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        self.say("up", f"API server healthy at {url}")
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        raise RuntimeError(f"the API server did not answer {url} within {timeout:.0f} s")

    def watch(self) -> int:
        """Wait until a component exits; its exit code (0 after a clean stop)."""
        while True:
            for name, process in self.processes.items():
                code = process.poll()
                if code is not None:
                    self.say("up", f"{name} exited with code {code}; stopping the others")
                    return code or 1
            time.sleep(1.0)

    def stop(self) -> None:
        """Terminate every component (its whole process group), then kill what is left after 20 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataengine.airflow.up", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--env-file", type=Path, help="KEY=VALUE settings to run the engine with")
    parser.add_argument("--health-timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.env_file is not None:
        env.update(read_env_file(args.env_file))
    # Tasks reach the Execution API of this API server; the standalone defaults, made explicit.
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{args.port}/execution/")
    env.setdefault("AIRFLOW__API__PORT", str(args.port))
    env.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    return env


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate, start the API server, wait for it, start the rest; run until one stops or Ctrl-C."""
    args = _arguments(argv)
    airflow = str(Path(sys.executable).with_name("airflow"))
    launcher = Launcher(airflow=airflow, port=args.port, env=_environment(args))
    signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    try:
        launcher.run("db", "migrate")
        launcher.run("pools", "set", "gpu", "1", "GPU slots for autolabel and training")
        launcher.start("api-server", "--port", str(args.port))
        launcher.wait_healthy(args.health_timeout)
        for name in AFTER_API:
            launcher.start(name)
        home = launcher.env.get("AIRFLOW_HOME", "~/airflow")
        launcher.say("up", f"Airflow: http://localhost:{args.port} (user admin; password in "
                           f"{home}/simple_auth_manager_passwords.json.generated)")  # fmt: skip
        code = launcher.watch()
    except KeyboardInterrupt:
        launcher.say("up", "stopping")
    except RuntimeError as exc:
        launcher.say("up", f"error: {exc}")
        code = EXIT_STARTUP_FAILED
    finally:
        launcher.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
