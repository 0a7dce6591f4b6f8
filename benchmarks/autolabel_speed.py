"""Autolabel speed: the whole pipeline's frames/s against the bare forward passes of the same models over
the same frames on the same device, in one run.

The pipeline reads JPEGs from the store through the prefetching DataLoader, runs the ensemble, fuses,
tracks, applies hindsight, writes the annotation files and commits lineage. The reference runs only
``model(batch)`` for each model on frames already decoded in memory. Goal: overhead <= 25%.

    python -m benchmarks.autolabel_speed [--clips 8] [--frames 24] [--cache DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.autolabel_common import CLASSES, MAX_SIZE, MIN_SIZE, RECIPES, render_clip, trained_detector
from dataengine import clips
from dataengine.autolabel import autolabel
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage import repository
from dataengine.vision import Detector, save_checkpoint, to_tensor

VIDEO_ID = "5eed5eed5eed5eed"


def write_clips(ctx: Context, n_clips: int, n_frames: int) -> list[np.ndarray]:
    """Synthetic clips as JPEG frames plus meta.json, registered in stage ``selected``; returns the frames
    as the pipeline will decode them."""
    decoded = []
    with ctx.db.session() as session:
        repository.register_video(
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
            repository.register_clip(
                session,
                clip_id=clip_id,
                video_id=VIDEO_ID,
                start_frame=meta.start_frame,
                end_frame=meta.end_frame,
                start_time=meta.start_time,
                n_frames=n_frames,
                uri=ctx.store.uri(clips.clip_prefix(clip_id)),
            )
            repository.set_stage(session, clip_id, "selected")
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
            repository.register_model(
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


def run(args: argparse.Namespace) -> tuple[float, float, int]:
    torch.set_num_threads(2)
    detectors = [trained_detector(r, args.cache)[0] for r in RECIPES[: args.models]]
    with tempfile.TemporaryDirectory(prefix="dataengine-autolabel-speed-") as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/lineage.db",
            storage_url=f"file://{tmp}/store",
            device="cpu",
            autolabel_models=[d.model_id for d in detectors],
            autolabel_batch_size=args.batch_size,
            autolabel_workers=args.workers,
        )
        ctx = Context.create(settings, run_id="bench/autolabel")
        try:
            frames = write_clips(ctx, args.clips, args.frames)
            save_models(ctx, detectors)
            bare_forward(detectors, frames[: args.batch_size], args.batch_size)  # warm-up
            reference = bare_forward(detectors, frames, args.batch_size)
            started = time.perf_counter()
            report = autolabel(ctx)
            ours = time.perf_counter() - started
            reference = min(reference, bare_forward(detectors, frames, args.batch_size))
        finally:
            ctx.close()
    if len(report.clips) != args.clips:
        raise RuntimeError(
            f"autolabel labelled {len(report.clips)} of {args.clips} clips: {report.summary()}"
        )
    return ours, reference, len(frames)


def rows() -> list[tuple[str, float, float, str]]:
    """The summary row of ``python -m benchmarks``: pipeline frames/s against the bare forward passes."""
    args = _parser().parse_args([])
    ours, reference, n_frames = run(args)
    return [
        (
            "autolabel pipeline, 2-model ensemble (frames/s)",
            n_frames / ours,
            n_frames / reference,
            "bare forward passes",
        )
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autolabel_speed", description=__doc__)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24, help="sampled frames per clip")
    parser.add_argument("--models", type=int, default=2, choices=(1, 2, 3), help="detectors in the ensemble")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the pipeline")
    parser.add_argument("--cache", type=Path, default=Path(".dataengine/bench-cache"))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    ours, reference, n_frames = run(args)
    print(
        f"autolabel speed: {args.clips} clips x {args.frames} frames (320x240), {args.models} tiny "
        "detectors, "
        f"CPU, batch {args.batch_size}, {args.workers} DataLoader worker(s)"
    )
    print(f"{'':<44} {'frames/s':>9}")
    print(f"{'whole autolabel pipeline (ours)':<44} {n_frames / ours:>9.1f}")
    print(f"{'bare model forward passes (reference)':<44} {n_frames / reference:>9.1f}")
    overhead = ours / reference - 1
    print(f"ratio ours/reference {reference / ours:.2f}; overhead {100 * overhead:.0f}% (goal <= 25%)")


if __name__ == "__main__":
    main()
