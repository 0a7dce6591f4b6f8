"""Monitoring UI: how fast each page renders with many clips in the lineage DB, against the 0.5 s budget.

Fills a fresh lineage DB (SQLite, and PostgreSQL when reachable) with videos of 100 clips, every clip
ingested and scored by two triggers, 10 % selected under the budget, most of those autolabelled and
some reviewed, events spread over 60 days, ten model versions: on SQLite with bulk inserts from Python,
on PostgreSQL generated inside the server (``populate_postgres``: the same rows, other random scores),
which fills 1M clips in about 6 minutes. Each page is then requested through the app (routing,
queries, HTML) and timed: the first request after the app starts, then the best of three. Issue 17's
target is every page within 0.5 s at 1M clips on PostgreSQL, first request included:
``python -m benchmarks.ui --clips 1000000 --no-sqlite``. Run alone:
``python -m benchmarks.ui [--clips N] [--no-postgres] [--no-sqlite]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
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

from benchmarks.stats import load_text, spread
from dataengine.airflow.ui import create_app
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.lineage.clips import recount_event_days
from dataengine.lineage.models import AnnotationVersion, Clip, ClipEvent, Model, TriggerScore, Video
from dataengine.lineage.review_totals import recount_review_totals

BUDGET_S = 0.5
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
    # The events went in past lineage.clips: count them per day, and the reviews per model, as its
    # writes would have.
    with ctx.db.session() as session:
        recount_event_days(session)
        recount_review_totals(session.connection())


FAST_FILL_SQL = """
CREATE TEMP TABLE bench_clips ON COMMIT DROP AS
SELECT v, i, lpad(to_hex(v), 16, '0') AS video_id,
       lpad(to_hex(v), 16, '0') || '-' || lpad((i * 50)::text, 7, '0') AS clip_id,
       TIMESTAMPTZ '2026-09-01 00:00:00+00' + (v % 60) * INTERVAL '1 day' + v * INTERVAL '1 minute' AS day,
       random() AS uncertainty, random() AS novelty
FROM generate_series(0, :n_videos - 1) AS v, generate_series(0, :per_video - 1) AS i;

CREATE TEMP TABLE bench_ranked ON COMMIT DROP AS
SELECT *, greatest(uncertainty, novelty) AS best,
       row_number() OVER (PARTITION BY v ORDER BY greatest(uncertainty, novelty) DESC, i) AS rank
FROM bench_clips;

INSERT INTO videos (id, uri, sha256, status, fps, duration, camera, created_at, updated_at)
SELECT lpad(to_hex(v), 16, '0'), 'landing/' || v || '.mp4', lpad(to_hex(v), 64, '0'), 'ingested',
       25.0, 200.0, 'cam-' || (v % 7), now(), now()
FROM generate_series(0, :n_videos - 1) AS v;

INSERT INTO models (id, dataset_id, parent_model_id, checkpoint_uri, status, created_at, metrics, origin)
SELECT 'm-' || lpad(m::text, 10, '0'), NULL,
       CASE WHEN m > 0 THEN 'm-' || lpad((m - 1)::text, 10, '0') END, 'c',
       CASE WHEN m = 9 THEN 'promoted' ELSE 'retired' END,
       TIMESTAMPTZ '2026-09-01 00:00:00+00' + m * INTERVAL '1 day',
       jsonb_build_object('eval', jsonb_build_object('map', 0.3 + m / 50.0, 'map50', 0.5 + m / 40.0,
           'per_class', jsonb_build_object('person', 0.4 + m / 40.0, 'bed', 0.2 + m / 30.0))),
       'trained'
FROM generate_series(0, 9) AS m;

INSERT INTO clips (id, video_id, start_frame, end_frame, start_time, n_frames, uri, stage,
                   created_at, updated_at)
SELECT clip_id, video_id, i * 50, i * 50 + 50, i * 2.0, 50, 'clips/' || clip_id,
       CASE WHEN rank <= :reviewed THEN 'reviewed' WHEN rank <= :autolabelled THEN 'autolabelled'
            WHEN rank <= :selected THEN 'selected' ELSE 'rejected' END,
       day, day
FROM bench_ranked ORDER BY v, i;

INSERT INTO trigger_scores (clip_id, trigger, score, frames, model_id, model_key, run_id, details, created_at)
SELECT clip_id, t.name, CASE t.name WHEN 'uncertainty' THEN uncertainty ELSE novelty END,
       '[3]'::jsonb, NULL, '', NULL, '{}'::jsonb, day
FROM bench_clips, (VALUES (1, 'uncertainty'), (2, 'novelty')) AS t(n, name)
ORDER BY v, i, t.n;

-- Events in the order the Python fill writes them: per video, ingested and scored per clip, then the
-- selection, then autolabel and review.
INSERT INTO clip_events (clip_id, stage, status, run_id, actor, details, at)
SELECT clip_id, stage, 'ok', run_id, 'airflow', details, at FROM (
    SELECT v, 0 AS part, i AS k, clip_id, e.stage,
           CASE e.stage WHEN 'ingested' THEN 'ingest_daily/scheduled__' || to_char(day, 'YYYY-MM-DD')
                || '/register_clips' ELSE 'detect_triggers/r' || v || '/score' END AS run_id,
           CASE e.stage WHEN 'ingested' THEN '{}'::jsonb ELSE jsonb_build_object('scores',
                jsonb_build_object('uncertainty', uncertainty, 'novelty', novelty)) END AS details,
           day AS at, e.n
    FROM bench_clips, (VALUES (1, 'ingested'), (2, 'scored')) AS e(n, stage)
    UNION ALL
    SELECT v, 1, rank, clip_id, CASE WHEN rank <= :selected THEN 'selected' ELSE 'rejected' END,
           'detect_triggers/r' || v || '/select',
           jsonb_build_object('score', best, 'rank', rank, 'budget', :selected, 'candidates', :per_video),
           day, 0
    FROM bench_ranked
    UNION ALL
    SELECT v, 2, rank, clip_id, e.stage,
           CASE e.stage WHEN 'autolabelled' THEN 'autolabel/r' || v || '/autolabel[0]'
                WHEN 'in_review' THEN 'review_export/r' || v || '/export'
                ELSE 'review_import/r' || v || '/import' END,
           CASE e.stage WHEN 'autolabelled' THEN jsonb_build_object('model_id',
                'm-' || lpad((v % 10)::text, 10, '0'), 'version', 1, 'n_boxes', 10)
                ELSE jsonb_build_object('version', 2, 'parent_version', 1, 'boxes_changed', rank - 1) END,
           day + INTERVAL '2 hours', e.n
    FROM bench_ranked, (VALUES (1, 'autolabelled'), (2, 'in_review'), (3, 'reviewed')) AS e(n, stage)
    WHERE rank <= :autolabelled AND (e.stage = 'autolabelled' OR rank <= :reviewed)
) AS events
ORDER BY v, part, k, n;

INSERT INTO annotation_versions (clip_id, version, uri, sha256, source, parent_version, producer,
                                 n_frames, n_boxes, created_at)
SELECT clip_id, a.version, 'u', repeat('0', 64), a.source, a.parent,
       jsonb_build_object('models', jsonb_build_array('m-' || lpad((v % 10)::text, 10, '0'))),
       4, 10, day + INTERVAL '2 hours'
FROM bench_ranked, (VALUES (1, 'autolabel', NULL::int), (2, 'review', 1)) AS a(version, source, parent)
WHERE rank <= :autolabelled AND (a.version = 1 OR rank <= :reviewed)
ORDER BY v, rank, a.version;

-- The per-day counts the lineage writes keep (lineage.clips.day_run_key drops a mapped task's index).
INSERT INTO clip_event_days (day, stage, status, run_key, events)
SELECT CAST(at AT TIME ZONE 'UTC' AS DATE), stage, status,
       regexp_replace(COALESCE(run_id, ''), '\\[\\d+\\]$', ''), count(*)
FROM clip_events GROUP BY 1, 2, 3, 4;
"""


def populate_postgres(ctx: Context, n_clips: int) -> None:
    """The rows of :func:`populate` generated inside PostgreSQL (``generate_series``): the same videos,
    clips, scores, events, annotation versions and models, with other random scores (so other clips are
    selected); then ``VACUUM ANALYZE``, as autovacuum would after a day of writes. About 2 minutes
    for 1M clips (3.2M events) instead of an hour of client-side inserts."""
    per_video = CLIPS_PER_VIDEO
    params = {
        "n_videos": max(1, n_clips // per_video),
        "per_video": per_video,
        "selected": per_video // 10,
        "autolabelled": 8,
        "reviewed": 4,
    }
    with ctx.db.session() as session:
        session.execute(text(FAST_FILL_SQL), params)
        recount_review_totals(session.connection())  # the models page's totals, as the writes keep them
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def _pages(n_videos: int) -> list[str]:
    last = f"{n_videos - 1:016x}"
    return [
        "/",
        f"/?until={(START + timedelta(days=30)):%Y-%m-%d}&days=30",
        "/clips",
        "/clips?stage=rejected",
        f"/clips?stage=rejected&after={last}-0000000",
        "/clips?stage=reviewed",
        f"/clips?stage=reviewed&after={n_videos // 2:016x}-0000000",
        "/videos",
        f"/videos?after={n_videos // 2:016x}",
        f"/videos/{last}",
        f"/clips/{last}-0000000",
        f"/api/clips/{n_videos // 3:016x}-0000050",
        "/api/status",
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


def bench(
    url: str, store: Path, n_clips: int, rounds: int, *, fill: bool = True
) -> list[tuple[str, list[float], list[float]]]:
    """Fill once (unless ``fill`` is False: a database filled before), then per round a new engine and
    app (so every first request opens its connection and compiles its template as after a server
    start): per page, the first-request and best-of-three seconds of every round."""
    settings = Settings(database_url=url, storage_url=f"file://{store}")
    if fill:
        ctx = Context.create(settings, run_id="bench/ui")
        try:
            started = time.perf_counter()
            if ctx.db.engine.dialect.name == "postgresql":
                populate_postgres(ctx, n_clips)
            else:
                populate(ctx, n_clips)
            print(f"{ctx.db!r}: {n_clips} clips inserted in {time.perf_counter() - started:.1f} s")
        finally:
            ctx.close()
    colds: dict[str, list[float]] = {}
    warms: dict[str, list[float]] = {}
    for _ in range(rounds):
        fresh = Context.create(settings, run_id="bench/ui", migrate=False)
        try:
            for path, cold, warm in time_pages(fresh, max(1, n_clips // CLIPS_PER_VIDEO)):
                colds.setdefault(path, []).append(cold)
                warms.setdefault(path, []).append(warm)
        finally:
            fresh.close()
        print(f"  round {len(next(iter(colds.values())))} done; {load_text()}")
    return [(path, colds[path], warms[path]) for path in colds]


def measure(
    n_clips: int, *, postgres: bool = True, sqlite: bool = True, rounds: int = 1, url: str | None = None
) -> list[tuple[str, str, list[float], list[float]]]:
    """``(backend, path, first-request s per round, warm s per round)`` for every page on SQLite and,
    when reachable, PostgreSQL; or on the database ``url`` filled before with ``n_clips`` clips."""
    out = []
    with tempfile.TemporaryDirectory(prefix="dataengine-bench-ui-") as tmp:
        if url is not None:
            backend = make_url(url).get_backend_name()
            for path, colds, warms in bench(url, Path(tmp) / "store", n_clips, rounds, fill=False):
                out.append((backend, path, colds, warms))
            return out
        backends = [("SQLite", f"sqlite:///{tmp}/lineage.db")] if sqlite else []
        with _postgres() if postgres else nullcontext(None) as pg_url:
            if pg_url:
                backends.append(("Postgres", pg_url))
            for backend, url in backends:
                for path, colds, warms in bench(url, Path(tmp) / "store", n_clips, rounds):
                    out.append((backend, path, colds, warms))
    return out


def rows(n_clips: int, *, postgres: bool = True) -> list[tuple[str, float, float, str]]:
    """``(name, pages/s, budget pages/s, reference)`` rows for ``python -m benchmarks`` (warm pages)."""
    return [
        (
            f"UI {path[:36]} {backend} (pages/s)",
            1 / statistics.median(warms),
            1 / BUDGET_S,
            f"{BUDGET_S} s budget",
        )
        for backend, path, _, warms in measure(n_clips, postgres=postgres)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ui", description=__doc__)
    parser.add_argument("--clips", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="app starts, each timing every page")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only (e.g. at 1M clips)")
    parser.add_argument(
        "--database-url", help="time the pages on this database, filled before with --clips clips (kept)"
    )
    args = parser.parse_args()
    print(f"before: {load_text()}")
    table = measure(
        args.clips,
        postgres=not args.no_postgres,
        sqlite=not args.no_sqlite,
        rounds=args.rounds,
        url=args.database_url,
    )
    print(f"after: {load_text()}")
    print(f"{'backend':<9} {'page':<52} {'first ms median (min-max)':>26} {'then ms':>8} {'ratio':>6}")
    for backend, path, colds, warms in table:
        first = spread([1000 * c for c in colds])
        worst = max(first.median, 1000 * statistics.median(warms))
        cell = f"{first.median:.0f} ({first.low:.0f}-{first.high:.0f})"
        print(
            f"{backend:<9} {path:<52} {cell:>26} {1000 * statistics.median(warms):>8.1f} "
            f"{1000 * BUDGET_S / worst:>6.2f}"
        )
    print(
        f"first = the first request after an app start, over {args.rounds} starts; then = best of three after"
    )
    print(f"it (median over starts); ratio = budget {BUDGET_S} s / the slower medians; above 1 is within it.")


if __name__ == "__main__":
    main()
