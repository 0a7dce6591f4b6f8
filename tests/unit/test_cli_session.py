"""One airflow CLI process for many commands (dataengine.airflow.cli_session), without Airflow itself:
the command handler is a stand-in here; tests/integration/test_demo_airflow_session.py runs real ones."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace
from collections.abc import Callable
from pathlib import Path

from dataengine.airflow.cli_session import run_command


def parser(func: Callable[[Namespace], None]) -> Callable[[list[str]], Namespace]:
    return lambda args: Namespace(func=func, args=args)


def test_a_command_that_returns_exits_0_and_its_output_and_its_childrens_go_to_its_log(
    tmp_path: Path, capfd: object
) -> None:
    def command(parsed: Namespace) -> None:
        print("hello from", parsed.args[0])
        subprocess.run(
            [sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"]
        )

    log = tmp_path / "one.log"
    assert run_command(parser(command), ["dags"], str(log)) == 0
    assert log.read_text().splitlines() == ["hello from dags", "child out", "child err"]
    print("after")  # the session's own output is back on its descriptors
    assert "after" in capfd.readouterr().out  # type: ignore[attr-defined]


def test_exit_codes_are_the_executables(tmp_path: Path) -> None:
    def fails(_: Namespace) -> None:
        raise SystemExit("DagRun failed")

    def exits_3(_: Namespace) -> None:
        raise SystemExit(3)

    def breaks(_: Namespace) -> None:
        raise KeyError("no such pool")

    assert run_command(parser(fails), [], str(tmp_path / "a.log")) == 1
    assert (tmp_path / "a.log").read_text() == "DagRun failed\n"
    assert run_command(parser(exits_3), [], str(tmp_path / "b.log")) == 3
    assert run_command(parser(breaks), [], str(tmp_path / "c.log")) == 1
    logged = (tmp_path / "c.log").read_text()
    assert logged.startswith("Traceback")
    assert "KeyError: 'no such pool'" in logged


def test_each_command_gets_a_fresh_log(tmp_path: Path) -> None:
    log = tmp_path / "same.log"
    run_command(parser(lambda _: print("first, longer line")), [], str(log))
    run_command(parser(lambda _: print("second")), [], str(log))
    assert log.read_text() == "second\n"
