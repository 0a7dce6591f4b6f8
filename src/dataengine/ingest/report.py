"""What one ingest run did: the videos and clips it added, skipped and quarantined."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class QuarantinedInput:
    """An input refused by ingest. ``video_id`` is None when the input could not be read at all."""

    input: str
    video_id: str | None
    reason: str


@dataclass
class IngestReport:
    """Ids of what an ingest run added, found done already, or refused."""

    videos: list[str] = field(default_factory=list)
    clips: list[str] = field(default_factory=list)
    existing_clips: list[str] = field(default_factory=list)
    skipped_videos: list[str] = field(default_factory=list)
    quarantined: list[QuarantinedInput] = field(default_factory=list)
    #: Clips left out because they looked like the clip kept before them (setting drop_duplicate_clips).
    dropped_duplicates: list[str] = field(default_factory=list)
    #: Ingested videos with missing objects, and their clips that were rebuilt from the source.
    repaired_videos: list[str] = field(default_factory=list)
    repaired_clips: list[str] = field(default_factory=list)
    #: Videos another run was ingesting at the same time: left to it.
    busy_videos: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)

    @property
    def did_anything(self) -> bool:
        """Whether any input was ingested, repaired, found ingested already or left to another run."""
        return bool(self.videos or self.skipped_videos or self.repaired_videos or self.busy_videos)

    def summary(self) -> str:
        """A short human sentence: counts, then each quarantined input with its reason."""
        parts = []
        if self.videos or not (self.skipped_videos or self.quarantined or self.repaired_videos):
            videos, clips = _count(len(self.videos), "video"), _count(len(self.clips), "new clip")
            parts.append(f"ingested {videos} into {clips}")
        if self.dropped_duplicates:
            parts.append(f"dropped {_count(len(self.dropped_duplicates), 'near-identical clip')}")
        if self.existing_clips:
            parts.append(f"{_count(len(self.existing_clips), 'clip')} existed already")
        if self.repaired_clips:
            videos = _count(len(self.repaired_videos), "video")
            parts.append(
                f"repaired {_count(len(self.repaired_clips), 'clip')} of {videos} (objects were missing)"
            )
        if self.skipped_videos:
            parts.append(f"skipped {_count(len(self.skipped_videos), 'video')} already ingested")
        if self.busy_videos:
            videos = _count(len(self.busy_videos), "video")
            parts.append(f"left {videos} to another run ingesting now ({', '.join(self.busy_videos)})")
        if self.quarantined:
            reasons = "; ".join(item.reason for item in self.quarantined)
            parts.append(f"quarantined {_count(len(self.quarantined), 'input')}: {reasons}")
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
