"""Progress on a terminal: drawn only on a terminal, and the training job's epochs read back with loss."""

from __future__ import annotations

import io
import sys

from rich.console import Console

from dataengine.progress import NO_PROGRESS, terminal_progress
from dataengine.training.epoch_line import EpochDone, epoch_line, parse_epoch_line
from dataengine.training.runner import run_torchrun
from progress_log import ProgressLog


def test_a_bar_is_drawn_on_a_terminal_only() -> None:
    screen = io.StringIO()
    with terminal_progress(console=Console(file=screen, force_terminal=True, width=100)) as progress:
        progress.start("autolabel", 3)
        for _ in range(3):
            progress.advance()
        progress.start("second phase", None)
        progress.advance(description="second phase, now named anew")
    drawn = screen.getvalue()
    assert "autolabel" in drawn
    assert "3/3" in drawn
    assert "second phase, now named anew" in drawn

    for console, enabled in ((Console(file=io.StringIO()), True), (Console(force_terminal=True), False)):
        with terminal_progress(enabled, console=console) as progress:
            assert progress is NO_PROGRESS
            progress.start("autolabel", 3)
            progress.advance()
    pipe = io.StringIO()
    with terminal_progress(console=Console(file=pipe)) as progress:  # a StringIO is no terminal
        progress.start("autolabel", 1)
        progress.advance()
    assert pipe.getvalue() == ""


def test_the_epoch_line_reads_back() -> None:
    line = "[dataengine.training] " + epoch_line(4, 12, 0.123456, 3.0)
    assert parse_epoch_line(line) == EpochDone(4, 12, 0.1235)
    assert parse_epoch_line("[dataengine.training] training m-1: 40 frames of 4 clips, 12 epochs") is None
    assert parse_epoch_line("epoch 1/2 done: loss nan-ish in 1s") is None


def test_the_launcher_reports_each_epoch_with_its_loss() -> None:
    """A child that prints what the job prints (a resumed job: epochs 0 and 1 were done before)."""
    lines = ["step 3 loss 0.9", epoch_line(2, 4, 0.5, 1.0), "noise", epoch_line(3, 4, 0.25, 1.0)]
    script = "; ".join(f"print({'[dataengine.training] ' + line!r})" for line in lines)
    log = ProgressLog()
    run_torchrun([sys.executable, "-c", script], {}, what="test job", progress=log)
    assert log.advances == [(3, "train epoch 3/4, loss 0.5000"), (1, "train epoch 4/4, loss 0.2500")]
    assert log.done == 4
