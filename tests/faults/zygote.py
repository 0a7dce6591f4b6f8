"""A process that imports ``dataengine`` (torch, torchvision, PyAV, OpenCV) once and forks a child per
CLI run: run as ``python zygote.py SOCKET``.

Each child is a real process running ``dataengine ARGS`` with its own environment, working folder and
output files, and its fault plan armed (``inject.py``); a SIGKILL kills it as it kills any process. Only
the imports are shared, which on a busy machine take most of a run's time.

Protocol, one connection per run: the client sends one JSON line ``{"args", "env", "cwd", "stdout",
"stderr"}``; the zygote answers ``{"pid": N}`` when the child started and ``{"status": S}`` when it ended
(its exit code, or minus the signal that ended it).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import inject

import dataengine.autolabel
import dataengine.cli
import dataengine.training
import dataengine.triggers
import dataengine.vision  # noqa: F401


def _child(request: dict[str, object]) -> None:
    """In the forked child: become the CLI run the request names; never returns."""
    code = 1
    try:
        os.setsid()
        os.chdir(str(request["cwd"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        for fd, key in ((1, "stdout"), (2, "stderr")):
            target = os.open(str(request[key]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        code = inject.run([str(a) for a in request["args"]])  # type: ignore[attr-defined]
    except BaseException:  # the child's own failure: shown in its stderr, as an interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _wait(connection: socket.socket, pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:
        connection.sendall(json.dumps({"status": code}).encode() + b"\n")
    finally:
        connection.close()


def main() -> None:
    path = sys.argv[1]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        with connection.makefile("rb") as reader:
            line = reader.readline()
        if not line:
            connection.close()
            continue
        request = json.loads(line)
        pid = os.fork()  # from the main thread: the child inherits no other thread's held lock
        if pid == 0:
            server.close()
            connection.close()
            _child(request)
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        threading.Thread(target=_wait, args=(connection, pid), daemon=True).start()


if __name__ == "__main__":
    main()
