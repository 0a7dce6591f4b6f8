"""Routing decoded frames into clips: planned boundaries, scene cuts, damaged stretches, duplicates.

Frames arrive in presentation order with their numbers. A clip covers ``[start, end)`` of the plan,
or ends early at a scene cut. A clip that contains a damaged or missing frame is dropped and its
stretch recorded as a gap; a clip that looks like the last kept one is dropped as a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from dataengine.clips import ClipMeta, clip_id_for
from dataengine.ingest.clipper import ClipWriter, Sampling, VideoFacts, clear_clip, complete_meta
from dataengine.ingest.decode import DecodedFrame
from dataengine.ingest.frames import JpegWriter, thumbnail
from dataengine.ingest.index import FrameIndex
from dataengine.ingest.plan import COPY, ClipPlan, encoding_for
from dataengine.ingest.skipping import missing_frames
from dataengine.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class CutOptions:
    """Optional splitting at scene cuts and dropping of near-identical consecutive clips."""

    split_on_scene_cuts: bool = False
    scene_cut_threshold: float = 25.0
    min_clip_seconds: float = 1.0
    drop_duplicate_clips: bool = False
    duplicate_threshold: float = 3.0
    copyable: bool = True


@dataclass
class Gap:
    """A damaged stretch ``[start_frame, end_frame)`` and the clips dropped because of it."""

    start_frame: int
    end_frame: int
    dropped: list[str] = field(default_factory=list)


class Recorder(Protocol):
    """Where the cutter reports clips: the pipeline registers them in lineage."""

    def clip(self, meta: ClipMeta, details: dict[str, Any], *, written: bool) -> None: ...

    def duplicate(self, kept: str, details: dict[str, Any]) -> None: ...


@dataclass
class _Open:
    """The clip being filled: its writer, or the ``meta`` of a clip complete already; start and end."""

    start: int
    end: int
    encoding: str
    writer: ClipWriter | None
    reason: str
    meta: ClipMeta | None = None


class Cutter:
    """Turns the decoded frames of one video into clips; :meth:`close` after the last frame."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        facts: VideoFacts,
        index: FrameIndex,
        plan: ClipPlan,
        sampling: Sampling,
        options: CutOptions,
        jpegs: JpegWriter,
        workdir: Path,
        recorder: Recorder,
        only: set[str] | None = None,
        skip: NDArray[np.bool_] | None = None,
    ) -> None:
        self.store, self.facts, self.index, self.plan = store, facts, index, plan
        self.sampling, self.options, self.jpegs, self.workdir = sampling, options, jpegs, workdir
        self.recorder = recorder
        #: When set (a repair), only these clips are looked at; the others are passed over.
        self.only = only
        self.skip = skip  # Frames left out of the decoder on purpose (ingest/skipping.py).
        self.gaps: list[Gap] = []
        self.kept = 0
        self._open: _Open | None = None
        self._expected = 0
        self._previous_thumb: NDArray[np.float32] | None = None
        self._scene_cut_at: int | None = None
        self._reference: tuple[str, NDArray[np.float32]] | None = None

    def push(self, decoded: DecodedFrame) -> None:
        """Take the next decoded frame."""
        number = decoded.number
        self._missing(self._expected, number)
        self._pass_over(self._expected, number)
        if decoded.corrupt:
            self._damage(number, number + 1)
        if self.options.split_on_scene_cuts:
            self._watch_scene(number, decoded)
        self._route(number)
        assert self._open is not None
        if self._open.writer is not None:
            self._open.writer.add(number, decoded.frame)
        self._expected = number + 1

    def close(self) -> None:
        """After the last frame: frames that never came are damage; finish the open clip."""
        self._missing(self._expected, self.index.n_frames)
        self._pass_over(self._expected, self.index.n_frames)
        if self._open is not None:
            self._finish(self._open)
            self._open = None

    def abort(self) -> None:
        """Drop a clip left half-written by an error."""
        if self._open is not None and self._open.writer is not None:
            self._open.writer.discard()
        self._open = None

    # Boundaries ----------------------------------------------------------------------------------

    def _route(self, number: int) -> None:
        current = self._open
        if current is not None and number >= current.end:
            self._finish(current)
            current = self._open = None
        elif current is not None and self._scene_cut_here(current, number):
            self._finish(current)
            self._open = self._begin(number, current.end, "scene_cut")
            self._scene_cut_at = None
            return
        if current is None:
            position = int(np.searchsorted(self.plan.starts, number, side="right")) - 1
            start = self.plan.starts[position]
            self._open = self._begin(start, self.plan.end_of(start), "fixed" if start else "start")
            self._scene_cut_at = None

    def _watch_scene(self, number: int, decoded: DecodedFrame) -> None:
        assert decoded.frame is not None, "scene cuts look at every frame's pixels"
        thumb = thumbnail(decoded.frame)
        previous, self._previous_thumb = self._previous_thumb, thumb
        if previous is None or self._open is None:
            return
        score = float(np.abs(thumb - previous).mean())
        times, minimum = self.index.times, self.options.min_clip_seconds
        long_enough = times[number] - times[self._open.start] >= minimum
        room_left = self._open.end >= self.index.n_frames or times[self._open.end] - times[number] >= minimum
        if score >= self.options.scene_cut_threshold and long_enough and room_left:
            self._scene_cut_at = number

    def _scene_cut_here(self, current: _Open, number: int) -> bool:
        """Cut at a pending scene cut: at once when re-encoding, else at the next clean keyframe."""
        if self._scene_cut_at is None or number <= current.start:
            return False
        return bool(self.index.clean[number]) or current.encoding != COPY

    def _begin(self, start: int, end: int, reason: str) -> _Open:
        clip_id = clip_id_for(self.facts.video_id, start)
        encoding = encoding_for(self.index, start=start, end=end, copyable=self.options.copyable)
        if self.only is not None and clip_id not in self.only:
            return _Open(start=start, end=end, encoding=encoding, writer=None, reason=reason)
        meta = complete_meta(self.store, clip_id)
        if meta is not None:
            # Done by an earlier run; its encoding still decides where a scene cut may end it.
            return _Open(start=start, end=end, encoding=encoding, writer=None, reason=reason, meta=meta)
        # Left incomplete by a killed run (or its frames deleted since): start it from nothing.
        clear_clip(self.store, clip_id)
        writer = ClipWriter(
            store=self.store,
            facts=self.facts,
            index=self.index,
            start_frame=start,
            encoding=encoding,
            sampling=self.sampling,
            jpegs=self.jpegs,
            workdir=self.workdir,
            keep_thumbnails=self.options.drop_duplicate_clips,
        )
        return _Open(start=start, end=end, encoding=encoding, writer=writer, reason=reason)

    # Finishing a clip ----------------------------------------------------------------------------

    def _finish(self, clip: _Open) -> None:
        writer = clip.writer
        details: dict[str, Any] = {"split": clip.reason}
        if writer is None:
            if clip.meta is None:
                self.kept += 1  # Passed over by a repair: complete, and registered already.
            else:
                self._keep(clip.meta, details, _signature_of(clip.meta), written=False)
            return
        end = writer.next_frame
        gap = self._gap_over(clip.start, end)
        if gap is not None:
            writer.discard()
            gap.dropped.append(writer.clip_id)
            return
        signature = None
        if self.options.drop_duplicate_clips and writer.thumbnails:
            signature = np.mean(writer.thumbnails, axis=0).ravel()
            if self._is_duplicate(writer, details):
                return
            details["signature"] = [round(float(v)) for v in signature.ravel()]
        meta = writer.finish(details=details)
        self._keep(meta, {k: v for k, v in details.items() if k != "signature"}, signature, written=True)

    def _keep(
        self,
        meta: ClipMeta,
        details: dict[str, Any],
        signature: NDArray[np.float32] | None,
        *,
        written: bool,
    ) -> None:
        self.recorder.clip(meta, details, written=written)
        self.kept += 1
        if signature is not None:
            self._reference = (meta.clip_id, signature)

    def _is_duplicate(self, writer: ClipWriter, details: dict[str, Any]) -> bool:
        if self._reference is None:
            return False
        kept, reference = self._reference
        difference = max(float(np.abs(t.ravel() - reference).mean()) for t in writer.thumbnails)
        details["difference_to_previous"] = round(difference, 3)
        if difference >= self.options.duplicate_threshold:
            return False
        writer.discard()
        self.recorder.duplicate(
            kept,
            {
                "decision": "dropped_duplicate",
                "clip_id": writer.clip_id,
                "start_frame": writer.start_frame,
                "end_frame": writer.next_frame,
                "difference": round(difference, 3),
                "threshold": self.options.duplicate_threshold,
            },
        )
        return True

    # Damage --------------------------------------------------------------------------------------

    def _pass_over(self, start: int, end: int) -> None:
        """Frames of ``[start, end)`` skipped on purpose still belong to their clips (never sampled)."""
        if self.skip is None or end <= start:
            return
        for number in (np.flatnonzero(self.skip[start:end]) + start).tolist():
            self._route(number)
            assert self._open is not None
            if self._open.writer is not None:
                self._open.writer.next_frame = number + 1

    def _missing(self, start: int, end: int) -> None:
        """Frames ``[start, end)`` did not come out of the decoder: damage, unless skipped on purpose."""
        stretch = missing_frames(start, end, self.skip)
        if stretch is not None:
            self._damage(*stretch)

    def _damage(self, start: int, end: int) -> None:
        """Frames ``[start, end)`` are damaged; the frames after them up to the next keyframe too."""
        end = max(end, self.index.next_keyframe(end - 1))
        last = self.gaps[-1] if self.gaps else None
        if last is not None and start <= last.end_frame:
            last.end_frame = max(last.end_frame, end)
        else:
            self.gaps.append(Gap(start_frame=start, end_frame=end))

    def _gap_over(self, start: int, end: int) -> Gap | None:
        return next((g for g in self.gaps if g.start_frame < end and start < g.end_frame), None)


def _signature_of(meta: ClipMeta) -> NDArray[np.float32] | None:
    values = meta.extra.get("signature")
    return None if not values else np.asarray(values, dtype=np.float32).reshape(-1)
