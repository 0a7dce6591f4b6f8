"""Progress of the long stage calls on a terminal: the stages count their steps, the CLI draws them.

A stage takes a :class:`Progress` (``NO_PROGRESS`` by default, as under Airflow, whose log is the record)
and calls ``start`` once it knows how many steps there are, then ``advance`` after each. The CLI passes
:func:`terminal_progress`: a rich bar on stderr, drawn only when stderr is a terminal and ``--json`` was
not given, so a pipe or a log file never receives bar frames and stdout stays the command's result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import rich.progress
    from rich.console import Console


class Progress(Protocol):
    """Where a stage reports how far it got."""

    def start(self, description: str, total: int | None) -> None:
        """A new phase of ``total`` steps (None: unknown) named ``description``."""

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        """``steps`` more steps done; ``description`` replaces the phase's name (e.g. with a loss)."""


class _Quiet:
    """Reports go nowhere: the default of every stage, and the CLI's choice off a terminal."""

    def start(self, description: str, total: int | None) -> None:
        return None

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        return None


NO_PROGRESS: Progress = _Quiet()


class _Bar:
    """A rich progress display with one bar per phase."""

    def __init__(self, display: rich.progress.Progress) -> None:
        self._display = display
        self._task: rich.progress.TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        self._task = self._display.add_task(description, total=total)

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        if self._task is None:
            self.start(description or "working", None)
        assert self._task is not None
        if description is not None:
            self._display.update(self._task, description=description)
        self._display.advance(self._task, steps)


@contextmanager
def terminal_progress(enabled: bool = True, *, console: Console | None = None) -> Iterator[Progress]:
    """A progress bar on ``console`` (stderr by default) when ``enabled`` and it is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Display

    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield NO_PROGRESS
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Display(*columns, console=console, transient=False) as display:
        yield _Bar(display)
