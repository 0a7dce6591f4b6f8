"""Several ``airflow`` CLI commands in one process, for the demo.

``make demo`` runs about fifteen ``airflow dags test`` commands one after the other. Each is a new
process that imports Airflow, loads its providers and configuration, and imports the task code (torch
among it) again: 4-5 s of CPU per command before a task starts. This session starts once and runs each
command through Airflow's own CLI parser and handler, exactly as the ``airflow`` executable would.

Protocol: one JSON object per line on stdin, ``{"args": [...], "log": "path"}``; for each, the command's
output (file descriptors 1 and 2, so child processes such as torchrun write there too) goes to ``log``,
and one JSON line ``{"code": N}`` is written to the result descriptor given as the only argument. End of
input ends the session. A command that fails has a non-zero code, as the executable's exit status would.

    python -m dataengine.airflow.cli_session RESULT_FD
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any


def _exit_code(exc: SystemExit) -> int:
    """The exit status a process would have had for ``exc``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # what the interpreter prints for SystemExit("message")
    return 1


def run_command(parse: Callable[[list[str]], Any], args: list[str], log: str) -> int:
    """Run one CLI command with its output in ``log``; returns its exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    # Only the descriptors move, never the Python stream objects: Airflow's loggers keep the stream they
    # were configured with, and a stream swapped in for one command would be closed under the next.
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            parsed = parse(args)
            parsed.func(parsed)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except Exception:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (fd, *saved):
            os.close(descriptor)
    return code


def main() -> int:
    """Serve commands from stdin until it closes."""
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    # Line-buffered, so that the command's lines and its child processes' stay in order in its log.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    with os.fdopen(int(sys.argv[1]), "w", buffering=1) as results:
        for line in sys.stdin:
            request = json.loads(line)
            code = run_command(parser.parse_args, list(request["args"]), str(request["log"]))
            results.write(json.dumps({"code": code}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
