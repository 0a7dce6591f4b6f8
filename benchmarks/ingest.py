"""Ingest benchmark: our ingest against the ``ffmpeg`` command line doing the same work, in one run.

Both cut a generated H.264 video (1080p and 720p, 25 fps, a keyframe every 2 s, B-frames, noise so
that it decodes like camera footage) into 10 s clips and extract JPEG frames at 2 fps. ffmpeg does it
in one command (segment muxer with stream copy, plus the ``fps`` filter into its MJPEG encoder); ours
also hashes the file, writes ``meta.json`` and registers every clip in the lineage database. Each side
runs in a child process, so its peak memory (max RSS) is its own. Peak memory for a one-hour video is
extrapolated linearly from a half-length and the full-length video (memory is meant to stay flat).

    python -m benchmarks.ingest [--seconds 60] [--repeats 2] [--videos DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FPS = 25
CLIP_SECONDS = 10.0
SAMPLE_FPS = 2.0
JPEG_QUALITY = 90
# ffmpeg's MJPEG scale (2 best .. 31): 2 is the closest to libjpeg quality 90 (the JPEG byte totals
# of both sides are printed, to check that the comparison is like for like).
FFMPEG_QSCALE = 2
SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}
Row = tuple[str, float, float, str]


@dataclass(frozen=True)
class Run:
    """One timed run: wall seconds, peak memory in MB, and the JPEG frames and clips it wrote."""

    seconds: float
    peak_mb: float
    jpegs: int
    jpeg_mb: float
    clips: int


def need_ffmpeg() -> str:
    """The ffmpeg executable; exits with the set-up step when it is missing."""
    found = shutil.which("ffmpeg")
    if found is None:
        sys.exit(
            "benchmarks.ingest needs the ffmpeg command line: apt-get install -y ffmpeg (make bench does)"
        )
    return found


def generate(path: Path, *, seconds: float, size: tuple[int, int]) -> Path:
    """A noisy test-pattern H.264 video (yuv420p, 25 fps, GOP 2 s); reused when it exists."""
    if path.exists():
        return path
    width, height = size
    tmp = path.with_suffix(".part.mp4")
    subprocess.run(
        [need_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=s={width}x{height}:r={FPS}:d={seconds}", "-vf", "noise=alls=8:allf=t+u",
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(2 * FPS),
         "-pix_fmt", "yuv420p", str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(path)
    return path


def _child_rusage(args: list[str]) -> tuple[float, float]:
    """Run ``args``; returns (wall seconds, peak RSS in MB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[0]} failed: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def _outputs(root: Path) -> tuple[int, float, int]:
    jpegs = [p for p in root.rglob("*.jpg")]
    clips = [p for p in root.rglob("*.mp4")]
    return len(jpegs), sum(p.stat().st_size for p in jpegs) / 1e6, len(clips)


def run_ffmpeg(video: Path, work: Path) -> Run:
    """ffmpeg: stream-copy segments of 10 s and JPEGs at 2 fps, in one decode."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="ffmpeg-"))
    (root / "clips").mkdir()
    (root / "frames").mkdir()
    args = [
        need_ffmpeg(), "-v", "error", "-y", "-i", str(video),
        "-map", "0:v", "-c", "copy", "-f", "segment", "-segment_time", str(CLIP_SECONDS),
        "-reset_timestamps", "1", str(root / "clips" / "%05d.mp4"),
        "-map", "0:v", "-vf", f"fps={SAMPLE_FPS}", "-q:v", str(FFMPEG_QSCALE),
        str(root / "frames" / "%06d.jpg"),
    ]  # fmt: skip
    seconds, peak = _child_rusage(args)
    jpegs, jpeg_mb, clips = _outputs(root)
    shutil.rmtree(root)
    return Run(seconds, peak, jpegs, jpeg_mb, clips)


def run_ours(video: Path, work: Path) -> Run:
    """Our ingest of the one video into a fresh store and lineage database, in a child process."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="ours-"))
    args = [sys.executable, "-m", "benchmarks.ingest", "--child", str(video), str(root)]
    _, peak = _child_rusage(args)
    result = json.loads((root / "result.json").read_text())
    jpegs, jpeg_mb, clips = _outputs(root / "store" / "clips")
    shutil.rmtree(root)
    if result["quarantined"]:
        raise RuntimeError(f"ingest quarantined the benchmark video: {result['quarantined']}")
    return Run(result["seconds"], peak, jpegs, jpeg_mb, clips)


def child(video: Path, root: Path) -> None:
    """The child process of :func:`run_ours`: times ``ingest`` alone, writes ``result.json``."""
    from dataengine.config import Settings
    from dataengine.context import Context
    from dataengine.ingest import ingest

    settings = Settings(
        database_url=f"sqlite:///{root / 'lineage.db'}",
        storage_url=f"file://{root / 'store'}",
        clip_seconds=CLIP_SECONDS,
        sample_fps=SAMPLE_FPS,
        jpeg_quality=JPEG_QUALITY,
    )
    ctx = Context.create(settings, run_id="bench/ingest")
    started = time.perf_counter()
    report = ingest(ctx, [str(video)])
    seconds = time.perf_counter() - started
    ctx.close()
    doc = {
        "seconds": seconds,
        "clips": len(report.clips),
        "quarantined": [q.reason for q in report.quarantined],
    }
    (root / "result.json").write_text(json.dumps(doc))


def best(runs: list[Run]) -> Run:
    """The fastest run, with the highest peak memory seen over all runs."""
    fastest = min(runs, key=lambda r: r.seconds)
    return Run(fastest.seconds, max(r.peak_mb for r in runs), fastest.jpegs, fastest.jpeg_mb, fastest.clips)


def bench_ingest(
    work: Path, *, seconds: float = 60.0, repeats: int = 2, videos: Path | None = None
) -> list[Row]:
    """Print the detailed table; returns the throughput rows (ours vs ffmpeg) for ``python -m benchmarks``."""
    videos = videos or work
    videos.mkdir(parents=True, exist_ok=True)
    n_frames = round(seconds * FPS)
    rows: list[Row] = []
    lines = []
    peaks: dict[str, float] = {}
    for label, size in SIZES.items():
        video = generate(videos / f"bench-{label}-{seconds:g}s.mp4", seconds=seconds, size=size)
        ref = best([run_ffmpeg(video, work) for _ in range(repeats)])
        ours = best([run_ours(video, work) for _ in range(repeats)])
        peaks[label] = ours.peak_mb
        for who, run in (("ours", ours), ("ffmpeg", ref)):
            lines.append(
                f"{label:<6} {who:<7} {n_frames / run.seconds:>9.1f} {seconds / run.seconds:>8.2f}x "
                f"{run.peak_mb:>9.0f} {run.clips:>6} {run.jpegs:>6} {run.jpeg_mb:>8.1f}"
            )
        ratio = ref.seconds / ours.seconds
        lines.append(f"{label:<6} ratio   {ratio:>9.2f}  (ours / ffmpeg throughput)")
        rows.append((f"ingest {label} {seconds:g} s, clips + 2 fps JPEG (frames/s)", n_frames / ours.seconds,
                     n_frames / ref.seconds, "ffmpeg CLI: segment copy + fps=2 JPEG"))  # fmt: skip
    half = _half_length_peak(videos, work, seconds=seconds, repeats=repeats)
    hour = peaks["1080p"] + max(0.0, peaks["1080p"] - half) * (3600 - seconds) / (seconds / 2)
    header = ("video", "who", "frames/s", "realtime", "peak MB", "clips", "jpegs", "jpeg MB")
    print("{:<6} {:<7} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8}".format(*header))
    print("\n".join(lines))
    print(f"peak memory, 1080p: {half:.0f} MB at {seconds / 2:g} s, {peaks['1080p']:.0f} MB at {seconds:g} s "
          f"-> {hour:.0f} MB extrapolated to one hour (goal < 500 MB)")  # fmt: skip
    return rows


def _half_length_peak(videos: Path, work: Path, *, seconds: float, repeats: int) -> float:
    """Our peak memory on a 1080p video half as long, generated the same way."""
    half = generate(videos / f"bench-1080p-{seconds / 2:g}s.mp4", seconds=seconds / 2, size=SIZES["1080p"])
    return best([run_ours(half, work) for _ in range(repeats)]).peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the generated videos")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side; the fastest counts")
    parser.add_argument("--videos", type=Path, help="folder to keep the generated videos in between runs")
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    need_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-ingest-") as tmp:
        bench_ingest(Path(tmp), seconds=args.seconds, repeats=args.repeats, videos=args.videos)


if __name__ == "__main__":
    main()
