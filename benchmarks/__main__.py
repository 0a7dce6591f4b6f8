"""Run every benchmark and print one table: our number, the reference's, and the ratio, in one run.

1. ingest: our whole ingest (decode, cut, re-encode clips, sample JPEGs, meta, lineage) against PyAV
   decoding the same video to RGB and doing nothing else, the floor any ingest sits on.
2. dataset start-up: our per-clip Dataset's ``__init__`` (it reads only the manifest) against
   ``pycocotools.coco.COCO`` loading the same labels as one COCO file, what each rank and worker
   of a COCO-based trainer pays before its first step.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
from pycocotools.coco import COCO

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame, save_annotations
from dataengine.formats.coco import to_coco
from dataengine.synthetic import SyntheticScene, render_video
from dataengine.training.dataset import ClipFrameDataset
from dataengine.training.manifest import ManifestEntry


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeats`` wall times of ``run``, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def pyav_decode(path: Path) -> int:
    """Decode every frame to an RGB array; the reference for ingest."""
    with av.open(str(path)) as container:
        return sum(1 for frame in container.decode(video=0) if frame.to_ndarray(format="rgb24") is not None)


def bench_ingest(
    tmp: Path, *, seconds: float, width: int, height: int
) -> list[tuple[str, float, float, str]]:
    video = tmp / "bench.mp4"
    render_video(
        video, scene=SyntheticScene(seed=1, width=width, height=height, fps=25.0, n_frames=int(seconds * 25))
    )
    n_frames = pyav_decode(video)
    reference = best_of(2, lambda: pyav_decode(video))
    from dataengine.ingest import ingest

    def ours() -> None:
        root = Path(tempfile.mkdtemp(dir=tmp))
        settings = Settings(database_url=f"sqlite:///{root / 'l.db'}", storage_url=f"file://{root / 's'}")
        ctx = Context.create(settings)
        ingest(ctx, [str(video)])
        ctx.close()

    ours_s = best_of(2, ours)
    return [
        (
            f"ingest {width}x{height}, {n_frames} frames (frames/s)",
            n_frames / ours_s,
            n_frames / reference,
            "PyAV decode to RGB only",
        )
    ]


def _labels(n_clips: int, frames_per_clip: int, boxes_per_frame: int) -> list[ClipAnnotations]:
    clips = []
    for c in range(n_clips):
        frames = [
            Frame(
                index=f,
                image=f"frames/{f:06d}.jpg",
                width=1280,
                height=720,
                boxes=[
                    Box(label="person", xyxy=(10.0 + b, 20.0, 60.0 + b, 200.0), track=b, origin="human")
                    for b in range(boxes_per_frame)
                ],
            )
            for f in range(frames_per_clip)
        ]
        clips.append(
            ClipAnnotations(
                clip_id=f"{c:016x}-0000000",
                version=1,
                source="review",
                classes=["person"],
                frames=frames,
                created_at="2026-11-22T00:00:00Z",
            )
        )
    return clips


def bench_dataset_init(tmp: Path, *, n_clips: int) -> list[tuple[str, float, float, str]]:
    from dataengine.storage import ObjectStore

    store = ObjectStore(f"file://{tmp / 'ds'}")
    clips = _labels(n_clips, frames_per_clip=20, boxes_per_frame=10)
    lines = []
    for clip in clips:
        saved = save_annotations(store, clip)
        entry = ManifestEntry(
            clip_id=clip.clip_id,
            video_id=clip.clip_id[:16],
            annotation_version=1,
            uri=saved.uri,
            sha256=saved.sha256,
            split="train",
            frames=tuple(f.index for f in clip.frames),
            width=1280,
            height=720,
            n_boxes=saved.n_boxes,
        )
        lines.append(entry.to_json_line())
    store.write_text("datasets/bench/v0001/manifest.jsonl", "\n".join(lines) + "\n")
    coco_path = tmp / "coco.json"
    coco_path.write_text(json.dumps(to_coco(clips, classes=["person"])))
    n_boxes = n_clips * 20 * 10

    def ours() -> None:
        ClipFrameDataset(store, "datasets/bench/v0001/manifest.jsonl", split="train", classes=["person"])

    def reference() -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            COCO(str(coco_path))

    ours_s, ref_s = best_of(3, ours), best_of(3, reference)
    return [
        (
            f"dataset start-up, {n_clips} clips, {n_boxes} boxes (starts/s)",
            1 / ours_s,
            1 / ref_s,
            "pycocotools COCO() of one file",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the ingest video")
    parser.add_argument("--clips", type=int, default=2000, help="clips in the dataset start-up benchmark")
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-") as tmp:
        rows += bench_ingest(Path(tmp), seconds=args.seconds, width=1280, height=720)
        rows += bench_dataset_init(Path(tmp), n_clips=args.clips)
    print(f"{'benchmark':<58} {'ours':>12} {'reference':>12} {'ratio':>8}  reference")
    for name, ours, reference, what in rows:
        print(f"{name:<58} {ours:>12.1f} {reference:>12.1f} {ours / reference:>8.2f}  {what}")
    print("ratio = ours / reference; higher is better for both rows.")


if __name__ == "__main__":
    main()
