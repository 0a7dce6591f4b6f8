"""Ingest benchmark: ``dataengine ingest`` against the ``ffmpeg`` command line doing the same work.

Both are run as a user would, as a command in a fresh process, timed from start to exit: ours
includes Python's start-up and imports. Both cut a generated 1080p H.264 video into 10 s clips (stream
copy) and extract JPEG frames at 2 fps. ffmpeg does it in one command (segment muxer, plus the ``fps``
filter into its MJPEG encoder); ours also hashes the file, writes ``meta.json`` and registers every
clip in a SQLite lineage database. Four videos: ``testsrc2`` clean (a keyframe every 60 frames, as a
quiet camera encodes) and with temporal noise (every 50 frames, like a sensor in low light), each 30
and 60 s long, 25 fps, x264 ``veryfast`` with its default B-frames.

Each repetition runs the two sides back to back, alternating which goes first, so that both see the
same load; the ratio (ffmpeg's wall time / ours) is taken per pair and reported as min / median / max
with the load average. The CPU-time ratio is printed too: on a busy machine it moves less than wall time.
Peak memory for a one-hour video is extrapolated linearly from the 30 s and 60 s noisy videos.

Ours runs with its bytecode compiled, as an installed package does (pip compiles it at install, and an
editable install writes it on its first run): where ``PYTHONDONTWRITEBYTECODE`` is set, as on the build
machines, every run would otherwise compile dataengine's own modules again (about 0.1 s of CPU).

``--daily`` also times ours, in the same pairs, on a lineage database created beforehand (``dataengine
init``, not timed), as a daily ingest finds it: the plain runs create and migrate a new database each.

    python -m benchmarks.ingest [--repeats 5] [--videos DIR] [--every-frame] [--daily]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import Spread, load_text, spread

FPS = 25
CLIP_SECONDS = 10.0
SAMPLE_FPS = 2.0
JPEG_QUALITY = 90
# ffmpeg's MJPEG scale (2 best .. 31): 2 is the closest to libjpeg quality 90 (the JPEG byte totals
# of both sides are printed, to check that the comparison is like for like).
FFMPEG_QSCALE = 2
SIZE = (1920, 1080)
KEYFRAME_TOLERANCE = 1.25
Row = tuple[str, float, float, str]


@dataclass(frozen=True)
class Video:
    """One generated test video."""

    name: str
    seconds: float
    noisy: bool
    gop: int

    @property
    def frames(self) -> int:
        return round(self.seconds * FPS)


VIDEOS = [
    Video("clean 30 s", 30.0, noisy=False, gop=60),
    Video("clean 60 s", 60.0, noisy=False, gop=60),
    Video("noisy 30 s", 30.0, noisy=True, gop=50),
    Video("noisy 60 s", 60.0, noisy=True, gop=50),
]


@dataclass(frozen=True)
class Run:
    """One timed command: wall and CPU seconds, peak memory in MB, and what it wrote."""

    seconds: float
    cpu: float
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


def generate(folder: Path, video: Video) -> Path:
    """The test video, generated once into ``folder`` (reused when it exists)."""
    kind = "noisy" if video.noisy else "clean"
    path = folder / f"bench-{kind}-{SIZE[1]}p-{video.seconds:g}s-g{video.gop}.mp4"
    if path.exists():
        return path
    noise = ["-vf", "noise=alls=8:allf=t+u"] if video.noisy else []
    tmp = path.with_suffix(".part.mp4")
    subprocess.run(
        [need_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=s={SIZE[0]}x{SIZE[1]}:r={FPS}:d={video.seconds}", *noise,
         "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(video.gop),
         "-pix_fmt", "yuv420p", str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(path)
    return path


def _outputs(root: Path) -> tuple[int, float, int]:
    jpegs = list(root.rglob("*.jpg"))
    clips = list(root.rglob("*.mp4"))
    return len(jpegs), sum(p.stat().st_size for p in jpegs) / 1e6, len(clips)


def _run(args: list[str], root: Path, *, env: dict[str, str] | None = None) -> tuple[Run, str]:
    """Run a command in its own process; wall, CPU and peak memory are that process's alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=root)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code != 0:
        raise RuntimeError(f"{args[0]} failed ({code}): {stderr[-2000:]}")
    jpegs, jpeg_mb, clips = _outputs(root)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds, cpu, usage.ru_maxrss / 1024, jpegs, jpeg_mb, clips), stdout


def run_ffmpeg(path: Path, work: Path) -> Run:
    """ffmpeg: stream-copy segments of 10 s and JPEGs at 2 fps, in one decode."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="ffmpeg-"))
    (root / "clips").mkdir()
    (root / "frames").mkdir()
    args = [
        need_ffmpeg(), "-v", "error", "-y", "-i", str(path),
        "-map", "0:v", "-c", "copy", "-f", "segment", "-segment_time", str(CLIP_SECONDS),
        "-reset_timestamps", "1", str(root / "clips" / "%05d.mp4"),
        "-map", "0:v", "-vf", f"fps={SAMPLE_FPS}", "-q:v", str(FFMPEG_QSCALE),
        str(root / "frames" / "%06d.jpg"),
    ]  # fmt: skip
    try:
        return _run(args, root)[0]
    finally:
        shutil.rmtree(root)


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "dataengine"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dataengine.cli"]


def compile_bytecode() -> None:
    """Write the bytecode of the dataengine package, as ``pip install`` does."""
    import dataengine

    for folder in dataengine.__path__:
        compileall.compile_dir(folder, quiet=1)


def run_ours(path: Path, work: Path, *, every_frame: bool = False, initialized: bool = False) -> Run:
    """``dataengine ingest --json VIDEO`` into a fresh store and SQLite lineage database (created by
    ``dataengine init`` before the timed run when ``initialized``)."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="ours-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAENGINE_")}
    env.update(
        DATAENGINE_DATABASE_URL=f"sqlite:///{root / 'lineage.db'}",
        DATAENGINE_STORAGE_URL=f"file://{root / 'store'}",
        DATAENGINE_CLIP_SECONDS=str(CLIP_SECONDS),
        DATAENGINE_SAMPLE_FPS=str(SAMPLE_FPS),
        DATAENGINE_JPEG_QUALITY=str(JPEG_QUALITY),
        # ffmpeg's segment muxer cuts at the first keyframe after each 10 s, up to a GOP late; ours moves a
        # boundary to a clean keyframe within this many seconds, else re-encodes the clip (x264: far more
        # work than ffmpeg does). Half the 2.4 s GOP keeps every clip a stream copy, as ffmpeg's are.
        DATAENGINE_KEYFRAME_TOLERANCE=str(KEYFRAME_TOLERANCE),
        DATAENGINE_INGEST_SKIP_FRAMES="false" if every_frame else "true",
    )
    try:
        if initialized:
            subprocess.run([*_cli(), "init"], cwd=root, env=env, check=True, capture_output=True)
        run, stdout = _run([*_cli(), "ingest", "--json", str(path)], root, env=env)
    finally:
        shutil.rmtree(root)
    report = json.loads(stdout)
    if report["quarantined"] or len(report["videos"]) != 1:
        raise RuntimeError(f"ingest did not take the benchmark video: {report}")
    return run


@dataclass(frozen=True)
class Pairs:
    """Repeated paired runs of one video."""

    video: Video
    ours: list[Run]
    ffmpeg: list[Run]
    every: list[Run]
    daily: list[Run]

    @property
    def ratio(self) -> Spread:
        return spread([f.seconds / o.seconds for f, o in zip(self.ffmpeg, self.ours, strict=True)])

    @property
    def cpu_ratio(self) -> Spread:
        return spread([f.cpu / o.cpu for f, o in zip(self.ffmpeg, self.ours, strict=True)])


def measure(
    path: Path, video: Video, work: Path, *, repeats: int, every_frame: bool, daily: bool = False
) -> Pairs:
    """``repeats`` pairs of runs, alternating which side goes first."""
    ours, ffmpeg, every, initialized = [], [], [], []
    for repeat in range(repeats):
        if repeat % 2:
            ours.append(run_ours(path, work))
            ffmpeg.append(run_ffmpeg(path, work))
        else:
            ffmpeg.append(run_ffmpeg(path, work))
            ours.append(run_ours(path, work))
        if every_frame:
            every.append(run_ours(path, work, every_frame=True))
        if daily:
            initialized.append(run_ours(path, work, initialized=True))
    return Pairs(video, ours, ffmpeg, every, initialized)


def startup(repeats: int) -> tuple[Spread, Spread]:
    """Wall and CPU seconds of ``dataengine --help``: the CLI's own start-up."""
    walls, cpus = [], []
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-cli-") as tmp:
        for _ in range(repeats):
            run, _ = _run([*_cli(), "--help"], Path(tmp))
            walls.append(run.seconds)
            cpus.append(run.cpu)
    return spread(walls), spread(cpus)


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def report(results: list[Pairs], loads: list[str]) -> None:
    """Print the per-video table."""
    print("video         who      frames/s  wall s    CPU s  peak MB clips jpegs  jpeg MB")
    for pairs, load in zip(results, loads, strict=True):
        sides = [("ours", pairs.ours), ("ffmpeg", pairs.ffmpeg)] + (
            [("every", pairs.every)] if pairs.every else []
        )
        sides += [("daily", pairs.daily)] if pairs.daily else []
        for who, runs in sides:
            run = _median_run(runs)
            peak = max(r.peak_mb for r in runs)
            print(
                f"{pairs.video.name:<13} {who:<7} {pairs.video.frames / run.seconds:>9.1f} "
                f"{run.seconds:>7.2f} {run.cpu:>7.2f} {peak:>8.0f} {run.clips:>5} {run.jpegs:>5} "
                f"{run.jpeg_mb:>8.1f}"
            )
        print(f"{pairs.video.name:<13} ratio (ffmpeg wall / ours) {pairs.ratio}; CPU {pairs.cpu_ratio}")
        if pairs.every:
            skip = spread([e.seconds / o.seconds for e, o in zip(pairs.every, pairs.ours, strict=True)])
            print(f"{pairs.video.name:<13} every frame decoded / ours, wall: {skip}")
        if pairs.daily:
            daily = spread([f.seconds / d.seconds for f, d in zip(pairs.ffmpeg, pairs.daily, strict=True)])
            cpu = spread([f.cpu / d.cpu for f, d in zip(pairs.ffmpeg, pairs.daily, strict=True)])
            print(
                f"{pairs.video.name:<13} ratio, initialized database (ffmpeg wall / daily) {daily}; CPU {cpu}"
            )
        print(f"{'':<13} {load}")


def bench_ingest(
    work: Path,
    *,
    repeats: int = 5,
    videos: Path | None = None,
    every_frame: bool = False,
    only: list[str] | None = None,
    daily: bool = False,
) -> list[Row]:
    """Print the tables; returns one row per video (median frames/s) for ``python -m benchmarks``."""
    folder = videos or work
    folder.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    results, loads = [], []
    for video in [v for v in VIDEOS if only is None or v.name in only]:
        path = generate(folder, video)
        before = load_text()
        results.append(measure(path, video, work, repeats=repeats, every_frame=every_frame, daily=daily))
        loads.append(f"{before} before, {load_text()} after")
    report(results, loads)
    by_name = {p.video.name: p for p in results}
    if "noisy 30 s" in by_name and "noisy 60 s" in by_name:
        half, full = (max(r.peak_mb for r in by_name[n].ours) for n in ("noisy 30 s", "noisy 60 s"))
        hour = full + max(0.0, full - half) * (3600 - 60) / 30
        print(
            f"peak memory (noisy): {half:.0f} MB at 30 s, {full:.0f} MB at 60 s -> {hour:.0f} MB for an hour"
        )
    wall, cpu = startup(repeats)
    print(f"CLI start-up, dataengine --help: wall {wall} s, CPU {cpu} s ({load_text()})")
    rows: list[Row] = []
    for pairs in results:
        ours, ref = _median_run(pairs.ours), _median_run(pairs.ffmpeg)
        name = f"ingest 1080p {pairs.video.name} (frames/s, median of {repeats})"
        frames = pairs.video.frames
        rows.append(
            (name, frames / ours.seconds, frames / ref.seconds, "ffmpeg CLI: segment copy + fps=2 JPEG")
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="paired runs per video")
    parser.add_argument("--videos", type=Path, help="folder to keep the generated videos in between runs")
    parser.add_argument("--every-frame", action="store_true", help="also time ours decoding every frame")
    parser.add_argument("--daily", action="store_true", help="also time ours on an initialized database")
    parser.add_argument("--only", action="append", choices=[v.name for v in VIDEOS], help="just these videos")
    args = parser.parse_args()
    need_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-ingest-") as tmp:
        bench_ingest(
            Path(tmp),
            repeats=args.repeats,
            videos=args.videos,
            every_frame=args.every_frame,
            only=args.only,
            daily=args.daily,
        )


if __name__ == "__main__":
    main()
