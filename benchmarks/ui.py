"""Monitoring UI: how fast each page renders with 100,000 clips in the lineage DB, against the 1 s budget.

Fills a fresh lineage DB (SQLite, and PostgreSQL when reachable) with bulk inserts: videos of 100
clips, every clip ingested and scored by two triggers, 10 % selected under the budget, most of those
autolabelled and some reviewed and in a dataset, events spread over 60 days, ten model versions.
Each page is then requested through the app (routing, queries, HTML) and timed, best of three after
a warm-up. Run alone: ``python -m benchmarks.ui [--clips N] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from dataengine.airflow.ui import create_app
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.models import AnnotationVersion, Clip, ClipEvent, Model, TriggerScore, Video

BUDGET_S = 1.0
CLIPS_PER_VIDEO = 100
POSTGRES_URL = os.environ.get(
    "DATAENGINE_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@localhost:5432/postgres"
)
START = datetime(2026, 9, 1, tzinfo=UTC)


def _event(clip_id: str, stage: str, at: datetime, run: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "clip_id": clip_id,
        "stage": stage,
        "status": "ok",
        "run_id": run,
        "actor": "airflow",
        "details": details,
        "at": at,
    }


def _clip_rows(video: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Rows of one video's clips, their scores, events and annotation versions."""
    video_id = f"{video:016x}"
    day = START + timedelta(days=video % 60, minutes=video)
    rows: dict[str, list[dict[str, Any]]] = {"clips": [], "scores": [], "events": [], "annotations": []}
    best = {}
    for i in range(CLIPS_PER_VIDEO):
        clip_id = f"{video_id}-{i * 50:07d}"
        scores = {"uncertainty": rng.random(), "novelty": rng.random()}
        best[clip_id] = max(scores.values())
        for name, score in scores.items():
            rows["scores"].append(
                {
                    "clip_id": clip_id,
                    "trigger": name,
                    "score": score,
                    "frames": [3],
                    "model_id": None,
                    "model_key": "",
                    "details": {},
                    "created_at": day,
                }
            )
        ingest_run = f"ingest_daily/scheduled__{day:%Y-%m-%d}/register_clips"
        rows["events"].append(_event(clip_id, "ingested", day, ingest_run, {}))
        rows["events"].append(
            _event(clip_id, "scored", day, f"detect_triggers/r{video}/score", {"scores": scores})
        )
    ranked = sorted(best, key=lambda c: -best[c])
    stage_of = {}
    for rank, clip_id in enumerate(ranked, start=1):
        stage = "selected" if rank <= CLIPS_PER_VIDEO // 10 else "rejected"
        details = {"score": best[clip_id], "rank": rank, "budget": 10, "candidates": CLIPS_PER_VIDEO}
        rows["events"].append(_event(clip_id, stage, day, f"detect_triggers/r{video}/select", details))
        stage_of[clip_id] = stage
    for n, clip_id in enumerate(ranked[:8]):
        later = day + timedelta(hours=2)
        rows["annotations"].append(
            {
                "clip_id": clip_id,
                "version": 1,
                "uri": "u",
                "sha256": "0" * 64,
                "source": "autolabel",
                "parent_version": None,
                "n_frames": 4,
                "n_boxes": 10,
                "producer": {"models": [f"m-{video % 10:010d}"]},
                "created_at": later,
            }
        )
        rows["events"].append(
            _event(
                clip_id,
                "autolabelled",
                later,
                f"autolabel/r{video}/autolabel[0]",
                {"model_id": f"m-{video % 10:010d}", "version": 1, "n_boxes": 10},
            )
        )
        stage_of[clip_id] = "autolabelled"
        if n < 4:
            review = {"version": 2, "parent_version": 1, "boxes_changed": n}
            rows["events"].append(
                _event(clip_id, "in_review", later, f"review_export/r{video}/export", review)
            )
            rows["events"].append(
                _event(clip_id, "reviewed", later, f"review_import/r{video}/import", review)
            )
            rows["annotations"].append(
                {**rows["annotations"][-1], "version": 2, "source": "review", "parent_version": 1}
            )
            stage_of[clip_id] = "reviewed"
    for i in range(CLIPS_PER_VIDEO):
        clip_id = f"{video_id}-{i * 50:07d}"
        rows["clips"].append(
            {
                "id": clip_id,
                "video_id": video_id,
                "start_frame": i * 50,
                "end_frame": i * 50 + 50,
                "start_time": i * 2.0,
                "n_frames": 50,
                "uri": f"clips/{clip_id}",
                "stage": stage_of[clip_id],
                "created_at": day,
                "updated_at": day,
            }
        )
    return rows


def populate(ctx: Context, n_clips: int) -> None:
    """Bulk-insert ``n_clips`` clips (in videos of 100) with their history, and ten models."""
    rng = random.Random(7)
    n_videos = max(1, n_clips // CLIPS_PER_VIDEO)
    tables = {"clips": Clip, "scores": TriggerScore, "events": ClipEvent, "annotations": AnnotationVersion}
    with ctx.db.session() as session:
        session.execute(
            insert(Video),
            [
                {
                    "id": f"{v:016x}",
                    "uri": f"landing/{v}.mp4",
                    "sha256": f"{v:064x}",
                    "status": "ingested",
                    "fps": 25.0,
                    "duration": 200.0,
                    "camera": f"cam-{v % 7}",
                }
                for v in range(n_videos)
            ],
        )
        session.execute(
            insert(Model),
            [
                {
                    "id": f"m-{m:010d}",
                    "dataset_id": None,
                    "parent_model_id": f"m-{m - 1:010d}" if m else None,
                    "checkpoint_uri": "c",
                    "status": "promoted" if m == 9 else "retired",
                    "created_at": START + timedelta(days=m),
                    "metrics": {
                        "eval": {
                            "map": 0.3 + m / 50,
                            "map50": 0.5 + m / 40,
                            "per_class": {"person": 0.4 + m / 40, "bed": 0.2 + m / 30},
                        }
                    },
                }
                for m in range(10)
            ],
        )
    for first in range(0, n_videos, 50):  # batches keep memory flat
        batch: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        for video in range(first, min(first + 50, n_videos)):
            for name, rows in _clip_rows(video, rng).items():
                batch[name] += rows
        with ctx.db.session() as session:
            for name, table in tables.items():
                session.execute(insert(table), batch[name])


def _pages(n_videos: int) -> list[str]:
    last = f"{n_videos - 1:016x}"
    return [
        "/",
        f"/?until={(START + timedelta(days=30)):%Y-%m-%d}&days=30",
        "/clips?stage=rejected",
        f"/clips?stage=rejected&after={last}-0000000",
        "/videos",
        f"/videos?after={n_videos // 2:016x}",
        f"/videos/{last}",
        f"/clips/{last}-0000000",
        "/stream",
        "/api/stream?after=0",
        "/models",
    ]


def time_pages(ctx: Context, n_videos: int) -> list[tuple[str, float, float]]:
    """Per page: seconds of the first request (cold caches) and the best of three after it."""
    client = TestClient(create_app(context_factory=lambda: ctx))
    results = []
    for path in _pages(n_videos):
        started = time.perf_counter()
        assert client.get(path).status_code == 200, path
        cold = time.perf_counter() - started
        times = []
        for _ in range(3):
            started = time.perf_counter()
            client.get(path)
            times.append(time.perf_counter() - started)
        results.append((path, cold, min(times)))
    return results


@contextmanager
def _postgres() -> Iterator[str | None]:
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        name = f"dataengine_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server: the SQLite numbers stand alone
        print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}")
        yield None
        return
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench(url: str, store: Path, n_clips: int) -> list[tuple[str, float, float]]:
    ctx = Context.create(Settings(database_url=url, storage_url=f"file://{store}"), run_id="bench/ui")
    try:
        started = time.perf_counter()
        populate(ctx, n_clips)
        print(f"{ctx.db!r}: {n_clips} clips inserted in {time.perf_counter() - started:.1f} s")
        return time_pages(ctx, max(1, n_clips // CLIPS_PER_VIDEO))
    finally:
        ctx.close()


def measure(n_clips: int, *, postgres: bool = True) -> list[tuple[str, str, float, float]]:
    """``(backend, path, cold s, warm s)`` for every page on SQLite and, when reachable, PostgreSQL."""
    out = []
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-ui-") as tmp:
        backends = [("SQLite", f"sqlite:///{tmp}/lineage.db")]
        with _postgres() if postgres else nullcontext(None) as pg_url:
            if pg_url:
                backends.append(("Postgres", pg_url))
            for backend, url in backends:
                for path, cold, warm in bench(url, Path(tmp) / "store", n_clips):
                    out.append((backend, path, cold, warm))
    return out


def rows(n_clips: int, *, postgres: bool = True) -> list[tuple[str, float, float, str]]:
    """``(name, pages/s, budget pages/s, reference)`` rows for ``python -m benchmarks`` (warm pages)."""
    return [
        (f"UI {path[:36]} {backend} (pages/s)", 1 / warm, 1 / BUDGET_S, "1 s page budget")
        for backend, path, _, warm in measure(n_clips, postgres=postgres)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui", description=__doc__)
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    table = measure(args.clips, postgres=not args.no_postgres)
    print(f"{'backend':<9} {'page':<52} {'first ms':>9} {'then ms':>8} {'budget ms':>10} {'ratio':>7}")
    for backend, path, cold, warm in table:
        print(
            f"{backend:<9} {path:<52} {1000 * cold:>9.1f} {1000 * warm:>8.1f} {1000 * BUDGET_S:>10.0f} "
            f"{BUDGET_S / max(cold, warm):>7.1f}"
        )
    print("first = the first request after start (empty caches); then = best of three after it;")
    print("ratio = budget / the slower of the two; above 1 means within the 1 s budget.")


if __name__ == "__main__":
    main()
