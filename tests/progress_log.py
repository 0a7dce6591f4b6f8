"""A :class:`~dataengine.progress.Progress` that keeps what a stage reported, for tests to check."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProgressLog:
    """Each phase as (description, total), and each advance as (steps, new description or None)."""

    phases: list[tuple[str, int | None]] = field(default_factory=list)
    advances: list[tuple[int, str | None]] = field(default_factory=list)

    def start(self, description: str, total: int | None) -> None:
        self.phases.append((description, total))

    def advance(self, steps: int = 1, *, description: str | None = None) -> None:
        self.advances.append((steps, description))

    @property
    def done(self) -> int:
        """Steps reported in all."""
        return sum(steps for steps, _ in self.advances)
