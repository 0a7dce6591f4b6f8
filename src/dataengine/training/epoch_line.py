"""The line the training job prints after each epoch, and how its launcher reads it back for progress.

The job runs under torchrun in a subprocess; its stdout is the only channel to the caller while it
runs, so the format is written and parsed here, in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"epoch (\d+)/(\d+) done: loss (\S+) in ")


@dataclass(frozen=True, slots=True)
class EpochDone:
    """Epoch ``epoch`` (0-based) of ``epochs`` finished with mean loss ``loss``."""

    epoch: int
    epochs: int
    loss: float


def epoch_line(epoch: int, epochs: int, loss: float, seconds: float) -> str:
    """What the job logs when epoch ``epoch`` (0-based) of ``epochs`` is done and its state saved."""
    return f"epoch {epoch}/{epochs} done: loss {loss:.4f} in {seconds:.1f}s, state saved"


def parse_epoch_line(line: str) -> EpochDone | None:
    """The epoch a line of the job's output reports done, or None for any other line."""
    found = _LINE.search(line)
    if found is None:
        return None
    try:
        loss = float(found.group(3))
    except ValueError:
        return None
    return EpochDone(int(found.group(1)), int(found.group(2)), loss)
