"""One video made ready to decode: ingest's parameters, the checked and probed file, its frame index,
clip plan and the frames the decoder can leave out.

Nothing here touches the store or the lineage database, and nothing imports them: the CLI prepares
and starts decoding its first video here while the database layer is still being imported
(``ingest/ahead.py``).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av.container import InputContainer
from numpy.typing import NDArray

from dataengine.config import Settings
from dataengine.errors import ConfigError
from dataengine.ingest.clipper import Sampling
from dataengine.ingest.cutter import CutOptions
from dataengine.ingest.index import FrameIndex, scan
from dataengine.ingest.plan import ClipPlan, plan_clips
from dataengine.ingest.probe import VideoInfo, open_video, probe, sniff
from dataengine.ingest.skipping import frames_to_skip, needed_frames
from dataengine.ingest.sources import compile_path_pattern

# Codecs an MP4 holds as they are: clips of these are cut by stream copy where the keyframes allow.
COPYABLE = {"h264", "hevc", "mpeg4", "av1", "vp9"}


@dataclass(frozen=True, slots=True)
class Params:
    """Everything that decides how one video is cut (from the settings and the call's arguments)."""

    clip_seconds: float
    sampling: Sampling
    max_resolution: int
    keyframe_tolerance: float
    codecs: list[str]
    workers: int
    cut: CutOptions
    skip_frames: bool


def ingest_params(settings: Settings, clip_seconds: float | None, sample_fps: float | None) -> Params:
    """The parameters of an ingest call; a bad combination is a :class:`ConfigError`."""
    params = Params(
        clip_seconds=settings.clip_seconds if clip_seconds is None else clip_seconds,
        sampling=Sampling(
            sample_fps=settings.sample_fps if sample_fps is None else sample_fps,
            jpeg_quality=settings.jpeg_quality,
            max_side=settings.jpeg_max_side or None,
        ),
        max_resolution=settings.max_resolution,
        keyframe_tolerance=settings.keyframe_tolerance,
        codecs=list(settings.ingest_codecs),
        workers=settings.ingest_jpeg_workers,
        skip_frames=settings.ingest_skip_frames,
        cut=CutOptions(
            split_on_scene_cuts=settings.split_on_scene_cuts,
            scene_cut_threshold=settings.scene_cut_threshold,
            min_clip_seconds=settings.min_clip_seconds,
            drop_duplicate_clips=settings.drop_duplicate_clips,
            duplicate_threshold=settings.duplicate_threshold,
        ),
    )
    if params.clip_seconds <= 0 or params.sampling.sample_fps < 0:
        raise ConfigError(
            "ingest needs clip_seconds > 0 and sample_fps >= 0, "
            f"got {params.clip_seconds} and {params.sampling.sample_fps}"
        )
    compile_path_pattern(settings.ingest_path_pattern)  # A bad pattern fails before any work.
    return params


@dataclass
class Prepared:
    """An open, checked video with its index and plan; :meth:`close` releases the file.

    ``skip`` marks the frames not given to the decoder (None: every frame is decoded), ``needed`` the
    frames whose pixels are used, by a sampled JPEG or a re-encoded clip (None: every frame's are).
    """

    container: InputContainer
    info: VideoInfo
    index: FrameIndex
    plan: ClipPlan
    options: CutOptions
    skip: NDArray[np.bool_] | None
    needed: NDArray[np.bool_] | None
    _files: ExitStack

    def close(self) -> None:
        self._files.close()


def prepare_video(path: Path, *, name: str, params: Params) -> Prepared:
    """Check, open and probe the file, read its frame index and plan its clips.

    A bad input raises :class:`InputRejectedError` whose reason names ``name``.
    """
    sniff(path, name=name)
    with ExitStack() as files:
        container = files.enter_context(open_video(path, name=name))
        info = probe(container, path, name=name, max_resolution=params.max_resolution, codecs=params.codecs)
        index = scan(path, name=name, fps=info.fps)
        plan = plan_clips(index, clip_seconds=params.clip_seconds, tolerance=params.keyframe_tolerance)
        options = _cut_options(params.cut, copyable=info.codec in COPYABLE)
        skip = needed = None
        # Scene cuts use every frame (each frame's thumbnail counts).
        if not options.split_on_scene_cuts:
            needed = needed_frames(
                index, plan, sample_fps=params.sampling.sample_fps, copyable=options.copyable
            )
            if params.skip_frames:
                skip = frames_to_skip(index, needed)
        prepared = Prepared(
            container=container,
            info=info,
            index=index,
            plan=plan,
            options=options,
            skip=skip,
            needed=needed,
            _files=files.pop_all(),
        )
    return prepared


def _cut_options(options: CutOptions, *, copyable: bool) -> CutOptions:
    return CutOptions(
        split_on_scene_cuts=options.split_on_scene_cuts,
        scene_cut_threshold=options.scene_cut_threshold,
        min_clip_seconds=options.min_clip_seconds,
        drop_duplicate_clips=options.drop_duplicate_clips,
        duplicate_threshold=options.duplicate_threshold,
        copyable=copyable,
    )
