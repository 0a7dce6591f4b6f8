"""One airflow CLI process for many commands (dataengine.airflow.cli_session), without Airflow itself:
the command handlers are stand-ins, run in a child process of their own (as the session is, with its
real descriptors 1 and 2); tests/integration/test_demo_airflow_session.py runs real airflow commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, subprocess, sys
from argparse import Namespace
from dataengine.airflow.cli_session import run_command

for stream in (sys.stdout, sys.stderr):
    stream.reconfigure(line_buffering=True)
cached = []  # a logger that keeps the stream it was configured with, as Airflow's structlog does

def parse(func):
    return lambda args: Namespace(func=func, args=args)

def hello(parsed):
    cached.append(sys.stdout)
    print("hello from", parsed.args[0])
    child = "import sys; print('child out'); print('child err', file=sys.stderr)"
    subprocess.run([sys.executable, "-c", child])

def logs_again(parsed):
    cached[0].write("logged through the cached stream\n")

def fails(parsed):
    raise SystemExit("DagRun failed")

def exits_3(parsed):
    raise SystemExit(3)

def breaks(parsed):
    raise KeyError("no such pool")

folder = sys.argv[1]
codes = [
    run_command(parse(hello), ["dags"], f"{folder}/hello.log"),
    run_command(parse(logs_again), [], f"{folder}/again.log"),
    run_command(parse(fails), [], f"{folder}/fails.log"),
    run_command(parse(exits_3), [], f"{folder}/exits3.log"),
    run_command(parse(breaks), [], f"{folder}/breaks.log"),
    run_command(parse(lambda _: print("second")), [], f"{folder}/again.log"),
]
print(json.dumps(codes))  # back on the session's own descriptor 1
"""


def test_commands_in_one_process_each_log_their_output_and_exit_codes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == [0, 0, 1, 3, 1, 0]
    assert result.stderr == ""
    # the command's own lines and its child process's, in order
    assert (tmp_path / "hello.log").read_text().splitlines() == ["hello from dags", "child out", "child err"]
    # SystemExit("message") prints the message, as the interpreter does, and exits 1
    assert (tmp_path / "fails.log").read_text() == "DagRun failed\n"
    assert (tmp_path / "exits3.log").read_text() == ""
    broke = (tmp_path / "breaks.log").read_text()
    assert broke.startswith("Traceback")
    assert "KeyError: 'no such pool'" in broke
    # a later command's log starts empty; the stream a logger kept from the first command still works
    assert (tmp_path / "again.log").read_text() == "second\n"


def test_a_stream_kept_from_an_earlier_command_writes_into_the_current_log(tmp_path: Path) -> None:
    script = SCRIPT.replace('run_command(parse(lambda _: print("second")), [], f"{folder}/again.log"),', "")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True)
    assert (tmp_path / "again.log").read_text() == "logged through the cached stream\n"
