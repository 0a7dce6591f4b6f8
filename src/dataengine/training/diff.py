"""What changed between two dataset versions: clips added, removed and relabelled.

A version's member list is ``clip_id → annotation version`` (``dataset_clips``). A clip in both versions
with another annotation version was relabelled (reviewed again). Every build stores its diff against the
previous version in ``datasets/{name}/v{version:04d}/diff.json``; any two versions can be compared with
:func:`diff_datasets` (``dataengine dataset diff A B``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dataengine.context import Context
from dataengine.lineage.datasets import dataset_members
from dataengine.storage import ObjectStore
from dataengine.training.manifest import resolve_dataset


@dataclass(frozen=True)
class DatasetDiff:
    """Changes from ``base`` to ``target``; lists are sorted by clip id."""

    base: str | None
    target: str
    #: ``[clip_id, annotation_version]`` pairs of clips only in ``target``.
    added: list[tuple[str, int]] = field(default_factory=list)
    #: ``[clip_id, annotation_version]`` pairs of clips only in ``base``.
    removed: list[tuple[str, int]] = field(default_factory=list)
    #: ``[clip_id, old_version, new_version]`` of clips in both with another annotation version.
    relabelled: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether the two versions have the same members."""
        return not (self.added or self.removed or self.relabelled)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: lists of lists."""
        return asdict(self)

    def summary_line(self) -> str:
        """One human line: ``default@2 → default@3: +4 added, -1 removed, ~2 relabelled``."""
        return (
            f"{self.base or '(nothing)'} → {self.target}: +{len(self.added)} added, "
            f"-{len(self.removed)} removed, ~{len(self.relabelled)} relabelled"
        )


def diff_members(
    before: Mapping[str, int], after: Mapping[str, int], *, base: str | None, target: str
) -> DatasetDiff:
    """The diff of two member maps (``clip_id → annotation version``)."""
    return DatasetDiff(
        base=base,
        target=target,
        added=[(c, after[c]) for c in sorted(after.keys() - before.keys())],
        removed=[(c, before[c]) for c in sorted(before.keys() - after.keys())],
        relabelled=[
            (c, before[c], after[c]) for c in sorted(before.keys() & after.keys()) if before[c] != after[c]
        ],
    )


def diff_summary(diff: DatasetDiff) -> dict[str, Any]:
    """The counts of a diff, as stored in the dataset row's ``counts["diff"]``."""
    return {
        "previous": diff.base,
        "added": len(diff.added),
        "removed": len(diff.removed),
        "relabelled": len(diff.relabelled),
    }


def diff_key(name: str, version: int) -> str:
    """Where a version's diff against its predecessor is stored."""
    return f"datasets/{name}/v{version:04d}/diff.json"


def write_diff(store: ObjectStore, name: str, version: int, diff: DatasetDiff) -> None:
    """Store a version's diff beside its manifest (rewritten if a dead build left one)."""
    store.write_json(diff_key(name, version), diff.to_dict())


def diff_datasets(ctx: Context, base: str, target: str) -> DatasetDiff:
    """The diff between two dataset versions (``NAME@VERSION`` or ``NAME`` for the newest)."""
    with ctx.db.session() as session:
        rows = [resolve_dataset(session, spec) for spec in (base, target)]
        before, after = (
            {m.clip_id: m.annotation_version for m in dataset_members(session, row.id)} for row in rows
        )
        return diff_members(before, after, base=rows[0].id, target=rows[1].id)
