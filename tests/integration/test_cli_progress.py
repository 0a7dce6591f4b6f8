"""The CLI's progress bars: drawn on a terminal (a real pseudo-terminal here), never into a pipe or --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from test_training import add_video

from cli_process import run_cli
from dataengine.context import Context

BAR_TITLE = "dataset build: reading labels"


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """``dataengine ARGS`` with stdin, stdout and stderr on a pseudo-terminal; its exit code and screen."""
    main, child_end = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", "from dataengine.cli import main; main()", *args],
        env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=child_end,
        stdout=child_end,
        stderr=child_end,
    )
    os.close(child_end)
    screen = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every holder of the terminal's other end has exited
            break
        if not chunk:
            break
        screen += chunk
    os.close(main)
    return process.wait(timeout=timeout), screen.decode(errors="replace")


def test_dataset_build_draws_a_bar_on_a_terminal_only(ctx: Context) -> None:
    for name in ("p-1", "p-2"):
        add_video(ctx, name, n_clips=2, n_frames=1)
    env = {
        "DATAENGINE_DATABASE_URL": ctx.settings.database_url,
        "DATAENGINE_STORAGE_URL": ctx.settings.storage_url,
    }

    code, screen = run_in_pty(["dataset", "build", "--name", "tty"], env)
    assert code == 0, screen
    assert BAR_TITLE in screen
    assert "4/4" in screen  # every candidate clip's labels were read
    assert "tty@1" in screen  # the result still prints after the bar

    piped = run_cli(["dataset", "build", "--name", "piped"], env)
    assert piped.returncode == 0, piped.stderr
    assert BAR_TITLE not in piped.stdout + piped.stderr
    assert piped.stdout.splitlines()[-1] == "piped@1"

    code, screen = run_in_pty(["dataset", "build", "--name", "quiet", "--json"], env)
    assert code == 0, screen
    assert BAR_TITLE not in screen
    assert json.loads(screen)["dataset_id"] == "quiet@1"
