"""How many boxes a review changed: the rule the review reports and lineage events use.

Per frame (a frame missing on one side counts as a frame with no boxes), boxes before and after the
review are matched greedily: candidate pairs are those with IoU >= ``MATCH_IOU``; same-label pairs are
taken before relabelled ones, and within each group the highest IoU first; each box is matched at most
once. Then

* a matched pair whose label differs is one *relabelled* box;
* a matched pair with the same label and IoU < ``UNCHANGED_IOU`` is one *moved* box, with IoU at or
  above it one *accepted* box;
* an unmatched box after the review is one *added* box, an unmatched box before it one *deleted* box.

``total`` = added + deleted + moved + relabelled. Score, track id and origin are not compared: accepting
a pre-label as it is changes nothing. Against the reviewed labels, the pre-labels' precision is
(accepted + moved) / boxes before and their recall (accepted + moved) / boxes after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dataengine.formats import Box, ClipAnnotations
from dataengine.vision.boxes import box_iou

#: Boxes overlapping at least this much can be the same object.
MATCH_IOU = 0.5
#: A matched box overlapping its original at least this much has not moved (the issue's "IoU under 0.9").
UNCHANGED_IOU = 0.9


@dataclass(frozen=True, slots=True)
class BoxChanges:
    """Boxes added, deleted, moved and relabelled by a review, and the pre-labels it accepted."""

    added: int = 0
    deleted: int = 0
    moved: int = 0
    relabelled: int = 0
    accepted: int = 0

    @property
    def total(self) -> int:
        """Every changed box, each counted once."""
        return self.added + self.deleted + self.moved + self.relabelled

    def __add__(self, other: BoxChanges) -> BoxChanges:
        return BoxChanges(
            added=self.added + other.added,
            deleted=self.deleted + other.deleted,
            moved=self.moved + other.moved,
            relabelled=self.relabelled + other.relabelled,
            accepted=self.accepted + other.accepted,
        )

    @property
    def before(self) -> int:
        """Boxes before the review (the pre-labels)."""
        return self.accepted + self.moved + self.relabelled + self.deleted

    @property
    def after(self) -> int:
        """Boxes after the review."""
        return self.accepted + self.moved + self.relabelled + self.added

    @property
    def precision(self) -> float | None:
        """Share of the pre-labels that the review kept (moved or not); ``None`` without pre-labels."""
        return (self.accepted + self.moved) / self.before if self.before else None

    @property
    def recall(self) -> float | None:
        """Share of the reviewed boxes that a pre-label found; ``None`` when the review has no boxes."""
        return (self.accepted + self.moved) / self.after if self.after else None

    def to_dict(self) -> dict[str, int]:
        """The counts and their total."""
        return {**asdict(self), "total": self.total}


def frame_changes(before: Sequence[Box], after: Sequence[Box]) -> BoxChanges:
    """The changes between one frame's boxes before and after review."""
    candidates = []
    for i, old in enumerate(before):
        for j, new in enumerate(after):
            overlap = box_iou(old.xyxy, new.xyxy)
            if overlap >= MATCH_IOU:
                candidates.append((old.label != new.label, -overlap, i, j))
    candidates.sort()
    used_before: set[int] = set()
    used_after: set[int] = set()
    moved = relabelled = accepted = 0
    for label_changed, negative_iou, i, j in candidates:
        if i in used_before or j in used_after:
            continue
        used_before.add(i)
        used_after.add(j)
        if label_changed:
            relabelled += 1
        elif -negative_iou < UNCHANGED_IOU:
            moved += 1
        else:
            accepted += 1
    return BoxChanges(
        added=len(after) - len(used_after),
        deleted=len(before) - len(used_before),
        moved=moved,
        relabelled=relabelled,
        accepted=accepted,
    )


def box_changes(before: ClipAnnotations, after: ClipAnnotations) -> BoxChanges:
    """The changes between two versions of a clip's labels, summed over every frame of either."""
    old_frames = {frame.index: frame.boxes for frame in before.frames}
    new_frames = {frame.index: frame.boxes for frame in after.frames}
    total = BoxChanges()
    for index in sorted(old_frames.keys() | new_frames.keys()):
        total += frame_changes(old_frames.get(index, []), new_frames.get(index, []))
    return total


def review_quality(changes: BoxChanges, *, models: Sequence[str], seconds: float | None) -> dict[str, Any]:
    """What one review says of the autolabels: the lineage ``quality`` record of a ``reviewed`` event."""
    return {
        "accepted": changes.accepted,
        "moved": changes.moved,
        "deleted": changes.deleted,
        "added": changes.added,
        "relabelled": changes.relabelled,
        "prelabels": changes.before,
        "reviewed_boxes": changes.after,
        "precision": changes.precision,
        "recall": changes.recall,
        "edit_rate": changes.total / changes.before if changes.before else None,
        "models": [str(model) for model in models],
        "seconds": seconds,
    }
