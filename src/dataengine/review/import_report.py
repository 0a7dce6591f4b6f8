"""What a review import did: :class:`ImportReport`, shared by the platform import and the file import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImportReport:
    """What :func:`import_reviews` did. ``changes`` holds boxes changed per imported clip."""

    imported: list[str]
    versions: dict[str, int]
    boxes_changed: int
    changes: dict[str, int]
    failed: list[tuple[str, str]]
    platform: str
    #: Whether any imported review came from the SIMULATED reviewer (the ``simulated`` platform).
    simulated: bool = False
    #: Clips whose review was refused before and whose payload has not changed since.
    still_refused: list[str] = field(default_factory=list)
    #: Imported clips that the SIMULATED reviewer labelled, not a person.
    simulated_clips: list[str] = field(default_factory=list)
    #: The label export file read (``--file``), and how many rows it has.
    file: str | None = None
    n_rows: int = 0
    #: Rows left alone, with the reason (no such clip, no open task with ``--open-tasks-only``).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Rows whose very bytes were imported before.
    already: list[tuple[str, str]] = field(default_factory=list)
    #: Clips whose file row had no open task: new versions with ``source: import``.
    from_file: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form."""
        return {
            "platform": self.platform,
            "simulated": self.simulated,
            "simulated_clips": list(self.simulated_clips),
            "imported": list(self.imported),
            "versions": dict(self.versions),
            "boxes_changed": self.boxes_changed,
            "changes": dict(self.changes),
            "failed": [{"clip_id": clip_id, "error": error} for clip_id, error in self.failed],
            "still_refused": list(self.still_refused),
            "file": self.file,
            "rows": self.n_rows,
            "imported_as_new_labels": list(self.from_file),
            "skipped": [{"row": name, "reason": reason} for name, reason in self.skipped],
            "already_imported": [{"row": name, "reason": reason} for name, reason in self.already],
        }

    def summary(self) -> str:
        """A short human summary, one extra line per refused review."""
        lines = []
        if self.simulated:
            lines.append(
                f"SIMULATED review (not a person): {len(self.simulated_clips)} clip(s) labelled "
                "from synthetic ground truth"
            )
        if self.file is not None:
            lines.append(
                f"{self.file}: {self.n_rows} row(s): imported {len(self.imported)} "
                f"({len(self.imported) - len(self.from_file)} review(s) of open {self.platform} tasks, "
                f"{len(self.from_file)} as new labels, source import), refused {len(self.failed)}, "
                f"skipped {len(self.skipped) + len(self.already)}"
            )
        else:
            lines.append(
                f"imported {len(self.imported)} review(s) from {self.platform}, "
                f"{self.boxes_changed} box(es) changed; refused {len(self.failed)}"
            )
        lines += [f"  refused {clip_id}: {error}" for clip_id, error in self.failed]
        lines += [f"  skipped {name}: {reason}" for name, reason in [*self.skipped, *self.already]]
        if self.still_refused:
            lines.append(f"  still refused, unchanged since the last run: {', '.join(self.still_refused)}")
        return "\n".join(lines)
