"""The ``dataengine`` CLI with a fault armed in its own process: run as ``python inject.py ARGS...``.

``FAULT_PLAN`` names the fault as ``ACTION:POINT:N``:

- ACTION ``kill`` sends the process SIGKILL (nothing of it runs after: no ``finally``, no cleanup);
  ``pause`` creates ``$FAULT_DIR/reached`` and waits until ``$FAULT_DIR/go`` exists (the test cuts the
  database meanwhile), then goes on.
- POINT ``write``: just after the N-th object write returned (the object exists, no row names it yet);
  ``commit``: just before the N-th lineage transaction commits (its objects are written, its rows are
  not); ``committed``: just after the N-th commit; ``spawn``: a few seconds after the N-th child process
  started (the torchrun job of ``train``). ACTION ``count`` fires nothing.

With ``FAULT_DIR`` set, a run that exits writes its counts of writes and commits to ``counts.json`` there.

Without ``FAULT_PLAN`` the CLI runs as is. Every run logs the ``dataengine`` loggers at DEBUG on stderr,
so that the suite's secret scan reads what an operator's DEBUG log would hold.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How long after starting a child process (torchrun) a ``spawn`` fault waits before it fires.
SPAWN_GRACE_SECONDS = 2.0
_lock = threading.Lock()
_counts: dict[str, int] = {}


def _fire(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is delivered before this returns
    folder = Path(os.environ["FAULT_DIR"])
    (folder / "reached").touch()
    while not (folder / "go").exists():
        time.sleep(0.02)


def _counted(point: str, target: str, n: int, action: str) -> bool:
    """Whether this call is the N-th at ``point`` of the armed one (counted across threads)."""
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        return point == target and _counts[point] == n


def arm(plan: str) -> None:
    """Patch the object store and the SQLAlchemy session so that ``plan`` fires where it says."""
    from sqlalchemy.orm import Session

    from dataengine.storage import ObjectStore

    action, target, count = plan.split(":")
    n = int(count)
    if action == "count":
        target = "none"
    elif action not in ("kill", "pause") or target not in ("write", "commit", "committed", "spawn"):
        raise SystemExit(f"FAULT_PLAN {plan!r}: want kill|pause : write|commit|committed|spawn : N")

    def after_write(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            if _counted("write", target, n, action):
                _fire(action)
            return result

        return wrapper

    for name in ("write_bytes", "put_file"):
        setattr(ObjectStore, name, after_write(getattr(ObjectStore, name)))
    real_commit = Session.commit

    def commit(self: Session) -> None:
        if _counted("commit", target, n, action):
            _fire(action)
        real_commit(self)
        if target == "committed" and _counts["commit"] == n:
            _fire(action)

    Session.commit = commit  # type: ignore[method-assign]
    real_popen_init = subprocess.Popen.__init__

    def popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        real_popen_init(self, *args, **kwargs)
        if _counted("spawn", target, n, action):
            time.sleep(SPAWN_GRACE_SECONDS)  # the child is up and at work
            _fire(action)

    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]


def run(args: list[str]) -> int:
    """``dataengine ARGS`` with ``FAULT_PLAN`` armed; its exit code. With ``FAULT_DIR`` set, a run that
    ends writes its counts of object writes and commits to ``counts.json`` there (the test picks its
    fault points from a clean run's counts)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("dataengine").setLevel(logging.DEBUG)
    plan = os.environ.get("FAULT_PLAN", "")
    if plan:
        arm(plan)
    from dataengine.cli import main as cli_main

    sys.argv = ["dataengine", *args]
    try:
        cli_main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if os.environ.get("FAULT_DIR"):
        (Path(os.environ["FAULT_DIR"]) / "counts.json").write_text(json.dumps(_counts))
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
