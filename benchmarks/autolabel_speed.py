"""Autolabel speed: the whole pipeline's frames/s against the bare forward passes of the same models over
the same frames on the same device, in one run.

The pipeline reads JPEGs from the store through the prefetching DataLoader, runs the ensemble, fuses,
tracks, applies hindsight, writes the annotation files and commits lineage. The reference runs only
``model(batch)`` for each model on frames already decoded in memory, with the same PyTorch threads.
Goal (issue 17): overhead <= 10% in every run.

    python -m benchmarks.autolabel_speed [--clips 8] [--frames 24] [--threads 2] [--prefetch N] [--cache DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.autolabel_common import CLASSES, MAX_SIZE, MIN_SIZE, RECIPES, render_clip, trained_detector
from dataengine import clips
from dataengine.autolabel import autolabel
from dataengine.autolabel.run import frame_workers
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.clips import register_clip, set_stage
from dataengine.lineage.model_registry import register_model
from dataengine.lineage.videos import register_video
from dataengine.vision import Detections, Detector, save_checkpoint, to_tensor

VIDEO_ID = "5eed5eed5eed5eed"


def write_clips(ctx: Context, n_clips: int, n_frames: int) -> list[np.ndarray]:
    """Synthetic clips as JPEG frames plus meta.json, registered in stage ``selected``; returns the frames
    as the pipeline will decode them."""
    decoded = []
    with ctx.db.session() as session:
        register_video(
            session, video_id=VIDEO_ID, uri="file:///bench.mp4", sha256=VIDEO_ID * 4, status="ingested"
        )
    for c in range(n_clips):
        clip_id = clips.clip_id_for(VIDEO_ID, c * n_frames)
        samples = render_clip(300 + c, n_frames)
        for sample in samples:
            data = clips.encode_jpeg(sample.rgb)
            ctx.store.write_bytes(clips.frame_key(clip_id, sample.index), data)
            decoded.append(clips.decode_jpeg(data, source_name="bench"))
        height, width = samples[0].rgb.shape[:2]
        meta = clips.ClipMeta(
            clip_id=clip_id,
            video_id=VIDEO_ID,
            source_uri="file:///bench.mp4",
            start_frame=c * n_frames,
            end_frame=(c + 1) * n_frames,
            start_time=c * n_frames / 10,
            end_time=(c + 1) * n_frames / 10,
            fps=10.0,
            width=width,
            height=height,
            sampled=[s.index for s in samples],
        )
        clips.write_meta(ctx.store, meta)
        with ctx.db.session() as session:
            register_clip(
                session,
                clip_id=clip_id,
                video_id=VIDEO_ID,
                start_frame=meta.start_frame,
                end_frame=meta.end_frame,
                start_time=meta.start_time,
                n_frames=n_frames,
                uri=ctx.store.uri(clips.clip_prefix(clip_id)),
            )
            set_stage(session, clip_id, "selected")
    return decoded


def save_models(ctx: Context, detectors: Sequence[Detector]) -> None:
    for detector in detectors:
        uri = save_checkpoint(
            ctx.store,
            detector.model_id,
            model=detector.model,
            arch="tiny_fasterrcnn",
            classes=CLASSES,
            min_size=MIN_SIZE,
            max_size=MAX_SIZE,
        )
        with ctx.db.session() as session:
            register_model(
                session, model_id=detector.model_id, checkpoint_uri=uri, dataset_id=None, parent_model_id=None
            )


@torch.inference_mode()
def bare_forward(detectors: Sequence[Detector], frames: Sequence[np.ndarray], batch_size: int) -> float:
    """Seconds for every model's forward pass over ``frames`` (already decoded), in batches."""
    started = time.perf_counter()
    for detector in detectors:
        for start in range(0, len(frames), batch_size):
            detector.model([to_tensor(f, detector.device) for f in frames[start : start + batch_size]])
    return time.perf_counter() - started


@dataclass
class Timing:
    """One repetition: the whole pipeline, the forward passes inside it, and the bare forward passes."""

    pipeline: float
    inside: float
    reference: float
    load: str = ""  # /proc/loadavg's 1-minute average after the repetition


@contextmanager
def timed_forward(total: list[float]) -> Iterator[None]:
    """Add the seconds spent in :meth:`Detector.predict_batch` to ``total[0]`` while inside."""
    original = Detector.predict_batch

    def predict_batch(self: Detector, frames: Sequence[np.ndarray]) -> list[Detections]:
        started = time.perf_counter()
        try:
            return original(self, frames)
        finally:
            total[0] += time.perf_counter() - started

    Detector.predict_batch = predict_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        Detector.predict_batch = original  # type: ignore[method-assign]


def run_once(args: argparse.Namespace, detectors: Sequence[Detector]) -> tuple[Timing, int]:
    """One repetition in a fresh store and database: bare passes, the pipeline, bare passes again."""
    with tempfile.TemporaryDirectory(prefix="dataengine-autolabel-speed-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/lineage.db",
            storage_url=f"file://{tmp}/store",
            device="cpu",
            autolabel_models=[d.model_id for d in detectors],
            autolabel_batch_size=args.batch_size,
            # Left unset, autolabel picks the workers itself (frame_workers: none on a busy CPU).
            **({} if args.workers is None else {"autolabel_workers": args.workers}),
            **({} if args.prefetch is None else {"autolabel_prefetch": args.prefetch}),
        )
        ctx = Context.create(settings, run_id="bench/autolabel")
        try:
            frames = write_clips(ctx, args.clips, args.frames)
            save_models(ctx, detectors)
            bare_forward(detectors, frames[: args.batch_size], args.batch_size)  # warm-up
            reference = bare_forward(detectors, frames, args.batch_size)
            inside = [0.0]
            started = time.perf_counter()
            with timed_forward(inside):
                report = autolabel(ctx)
            ours = time.perf_counter() - started
            reference = min(reference, bare_forward(detectors, frames, args.batch_size))
        finally:
            ctx.close()
    if len(report.clips) != args.clips:
        raise RuntimeError(
            f"autolabel labelled {len(report.clips)} of {args.clips} clips: {report.summary()}"
        )
    return Timing(ours, inside[0], reference, _load()), len(frames)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def run(args: argparse.Namespace) -> tuple[list[Timing], int]:
    """``--repeats`` repetitions; the bare passes run just before and after each pipeline run, so both
    see the same load."""
    torch.set_num_threads(args.threads)
    detectors = [trained_detector(r, args.cache)[0] for r in RECIPES[: args.models]]
    timings = []
    n_frames = 0
    for _ in range(args.repeats):
        timing, n_frames = run_once(args, detectors)
        timings.append(timing)
    return timings, n_frames


def rows() -> list[tuple[str, float, float, str]]:
    """The summary row of ``python -m benchmarks``: pipeline frames/s against the bare forward passes."""
    args = _parser().parse_args([])
    timings, n_frames = run(args)
    return [
        (
            "autolabel pipeline, 2-model ensemble (frames/s)",
            n_frames / min(t.pipeline for t in timings),
            n_frames / min(t.reference for t in timings),
            "bare forward passes",
        )
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autolabel_speed", description=__doc__)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24, help="sampled frames per clip")
    parser.add_argument("--models", type=int, default=2, choices=(1, 2, 3), help="detectors in the ensemble")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, help="DataLoader workers of the pipeline (default: autolabel's own choice)"
    )
    parser.add_argument(
        "--prefetch", type=int, help="batches a thread decodes ahead, 0: none (default: autolabel_prefetch)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="PyTorch intra-op threads (the pipeline's and the reference's)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, each in a fresh store")
    parser.add_argument("--cache", type=Path, default=Path(".dataengine/bench-cache"))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    timings, n_frames = run(args)
    workers = args.workers if args.workers is not None else frame_workers(Settings(), torch.device("cpu"))
    prefetch = args.prefetch if args.prefetch is not None else Settings().autolabel_prefetch
    reading = f"{workers} DataLoader worker(s)" if workers else f"a thread decoding {prefetch} batches ahead"
    print(
        f"autolabel speed: {args.clips} clips x {args.frames} frames (320x240), {args.models} tiny "
        f"detectors, CPU, {args.threads} torch thread(s), batch {args.batch_size}, "
        f"{reading if workers or prefetch else 'frames decoded inline'}, {args.repeats} repetition(s)"
    )
    print(f"{'run':<5} {'pipeline f/s':>13} {'bare f/s':>9} {'overhead':>9} {'in forward':>11} {'load':>6}")
    for i, t in enumerate(timings, start=1):
        print(
            f"{i:<5} {n_frames / t.pipeline:>13.1f} {n_frames / t.reference:>9.1f} "
            f"{100 * (t.pipeline / t.reference - 1):>8.0f}% {100 * t.inside / t.pipeline:>10.0f}% {t.load:>6}"
        )
    overheads = sorted(t.pipeline / t.reference - 1 for t in timings)
    low, mid, high = (100 * overheads[i] for i in (0, len(overheads) // 2, -1))
    print(f"overhead min / median / max {low:.0f}% / {mid:.0f}% / {high:.0f}% (goal <= 10% in every run)")


if __name__ == "__main__":
    main()
