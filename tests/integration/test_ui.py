"""The monitoring app that the Airflow plugin mounts at /dataengine, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import runpy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dataengine.airflow.ui import app as ui_app
from dataengine.airflow.ui import create_app
from dataengine.airflow.ui.static import ORIGIN_COLOURS
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.formats import annotation_key, load_annotations
from dataengine.lineage.clips import clip_events, set_stage
from dataengine.lineage.models import CLIP_STAGES, Clip, ClipEvent
from dataengine.lineage.quarantine import quarantine
from dataengine.lineage.views.reports import quarantine_list
from ui_scene import BUDGET, EXPORT_RUN, INGEST_RUN, SCORES, VIDEO_ID, Scene, build_scene

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Iterator[Context]:
    """An engine on each database backend with the UI's test scene in it."""
    context = Context.create(
        Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'store'}"), run_id="test/ui"
    )
    yield context
    context.close()


@pytest.fixture
def scene(engine: Context) -> Scene:
    return build_scene(engine)


@pytest.fixture
def client(engine: Context) -> TestClient:
    return TestClient(create_app(context_factory=lambda: engine))


@pytest.fixture
def sqlite_client(ctx: Context) -> TestClient:
    """The app on SQLite only, for tests that are not about the database."""
    build_scene(ctx)
    return TestClient(create_app(context_factory=lambda: ctx))


def _clip_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script id="clip-data" type="application/json">(.*?)</script>', page, re.S)
    assert found, "the clip page embeds its frames and boxes"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_funnel_counts_match_the_lineage_db(client: TestClient, engine: Context, scene: Scene) -> None:
    page = client.get("/")
    assert page.status_code == 200
    with engine.db.session() as session:
        counts = dict(session.execute(select(Clip.stage, func.count()).group_by(Clip.stage)).all())
    shown = dict(re.findall(r'data-stage="(\w+)">(\d+)<', page.text))
    assert {stage: int(n) for stage, n in shown.items()} == {
        stage: counts.get(stage, 0) for stage in CLIP_STAGES[:7]
    }
    assert "1 videos, 6 clips, 0 quarantined; promoted model: m-0000000001" in page.text
    # Each day's cell links the Airflow task instance that moved the clips.
    dag_run = "/dags/ingest_daily/runs/scheduled__2026-11-21T00%3A00%3A00%2B00%3A00/tasks/register_clips"
    assert f'href="{dag_run}"' in page.text
    assert 'href="/dags/review_export/runs/' in page.text
    assert re.search(r"<b>6</b><div class=\"runs\">.*?ingest_daily", page.text)


def test_funnel_links_respect_the_mount_prefix_and_page_by_days(client: TestClient, scene: Scene) -> None:
    assert "3 days to" in client.get("/", params={"days": 3}).text
    old = client.get("/", params={"until": "2020-01-10", "days": 7})
    assert "No clip moved in these days." in old.text
    assert 'href="/?until=2020-01-03&amp;days=7"' in old.text
    assert client.get("/", params={"days": 0}).status_code == 422


def test_clip_list_pages_by_keyset(client: TestClient, scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui_app, "PAGE_SIZE", 4)
    first = client.get("/clips")
    ids = re.findall(r'class="clip" href="/clips/([0-9a-f-]+)"', first.text)
    assert ids == scene.clip_ids[:4]
    after = re.search(r'class="next" href="/clips\?after=([0-9a-f-]+)"', first.text)
    assert after
    assert after.group(1) == scene.clip_ids[3]
    second = client.get("/clips", params={"after": after.group(1)})
    assert re.findall(r'class="clip" href="/clips/([0-9a-f-]+)"', second.text) == scene.clip_ids[4:]
    assert 'class="next"' not in second.text
    rejected = client.get("/clips", params={"stage": "rejected"})
    assert set(re.findall(r'class="clip" href="/clips/([0-9a-f-]+)"', rejected.text)) == (
        set(scene.clip_ids) - set(scene.selected)
    )
    assert client.get("/clips", params={"stage": "bogus"}).status_code == 400


def test_trigger_timeline_shades_selected_clips_and_draws_the_budget(
    client: TestClient, scene: Scene
) -> None:
    page = client.get(f"/videos/{VIDEO_ID}")
    assert page.status_code == 200
    assert sorted(re.findall(r'<rect class="sel" data-clip="([0-9a-f-]+)"', page.text)) == sorted(
        scene.selected
    )
    assert len(re.findall(r'<rect class="clip"', page.text)) == 6 - BUDGET
    # The lowest best-trigger score among the selected clips is where the budget cut.
    best = sorted((max(v[i] for v in SCORES.values()) for i in range(6)), reverse=True)
    assert f"budget {BUDGET} of 6 clips" in page.text
    assert f"selected score &gt;= {best[BUDGET - 1]:.3f}" in page.text
    for trigger in SCORES:
        assert f"{trigger} {SCORES[trigger][1]:.3f} ({scene.clip_ids[1]})" in page.text
    videos = client.get("/videos")
    assert f'href="/videos/{VIDEO_ID}"' in videos.text
    assert "<td>6</td>" in videos.text


def test_clip_page_shows_both_versions_history_and_scores(
    client: TestClient, engine: Context, scene: Scene
) -> None:
    page = client.get(f"/clips/{scene.reviewed}")
    assert page.status_code == 200
    data = _clip_data(page.text)
    assert data["panels"] == ["1", "2"]  # autolabel beside the review
    versions = data["versions"]
    assert isinstance(versions, dict)
    for version in (1, 2):
        labels = load_annotations(engine.store, scene.reviewed, version)
        drawn = versions[str(version)]["boxes"]
        assert {int(k): len(v) for k, v in drawn.items()} == {f.index: len(f.boxes) for f in labels.frames}
        assert {box[5] for boxes in drawn.values() for box in boxes} == {
            box.origin for f in labels.frames for box in f.boxes
        }
    assert data["colours"] == ORIGIN_COLOURS
    assert [f["index"] for f in data["frames"]] == [0, 5, 10, 15]
    assert "v1 · autolabel · m-0000000001" in page.text
    assert "v2 · review" in page.text
    with engine.db.session() as session:
        stages = [e.stage for e in clip_events(session, scene.reviewed)]
    assert re.findall(r"<tr><td>[\d: -]+</td><td>(\w+)</td>", page.text) == stages
    assert f"{SCORES['uncertainty'][1]:.3f}" in page.text
    assert "ward@1 (train)" in page.text
    only_one = _clip_data(client.get(f"/clips/{scene.reviewed}", params={"a": 2, "b": 2}).text)
    assert only_one["panels"] == ["2"]


def test_frames_are_served_from_storage_with_cache_headers(
    client: TestClient, engine: Context, scene: Scene
) -> None:
    url = f"/clips/{scene.reviewed}/frames/000005.jpg"
    response = client.get(url)
    assert response.status_code == 200
    stored = engine.store.read_bytes(f"clips/{scene.reviewed}/frames/000005.jpg")
    assert response.content == stored
    engine.store.delete(f"clips/{scene.reviewed}/frames/000005.jpg")
    assert client.get(url).content == stored  # the server keeps recent frames for scrubbing
    assert response.headers["content-type"] == "image/jpeg"
    assert "immutable" in response.headers["cache-control"]
    again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert client.get(f"/clips/{scene.reviewed}/frames/000007.jpg").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/clips/..%2F..%2F..%2Fetc%2Fpasswd/frames/000000.jpg",
        "/clips/0123456789abcdef-0000020/frames/..%2Fmeta.json",
        "/clips/0123456789abcdef-0000020/frames/%2E%2E%2F%2E%2E%2Fannotations",
        "/clips/0123456789abcdef-0000020/frames/000000.jpg%00.png",
        "/clips/0123456789abcdef-0000020/frames/meta.json",
        "/clips/0123456789abcdef-0000020/frames/0000001.jpg",
        "/clips/%2Fetc%2Fpasswd/frames/000000.jpg",
        "/clips/..%5C..%5Cwindows/frames/000000.jpg",
        "/clips/0123456789ABCDEF-0000020/frames/000000.jpg",
        "/clips/0123456789abcdef-0000020%2F..%2F..%2Fx/frames/000000.jpg",
        "/clips/%2E%2E",
        "/api/clips/..%2F..%2Fetc",
        "/videos/..%2F..",
        "/clips?after=..%2F..",
        "/clips?video=..%2F",
    ],
)
def test_paths_outside_the_storage_root_are_refused(sqlite_client: TestClient, path: str) -> None:
    response = sqlite_client.get(path)
    assert response.status_code in (400, 404), response.text
    assert b"root:" not in response.content
    assert b"schema" not in response.content


def test_stream_lists_the_newest_predictions_and_then_only_new_ones(
    client: TestClient, engine: Context, scene: Scene
) -> None:
    first = client.get("/api/stream").json()
    with engine.db.session() as session:
        expected = session.scalars(
            select(ClipEvent.id)
            .where(ClipEvent.stage.in_(("scored", "autolabelled")))
            .order_by(ClipEvent.id.desc())
        ).all()
    assert [e["id"] for e in first["events"]] == expected
    assert first["last_id"] == expected[0]
    assert first["events"][0]["stage"] == "autolabelled"
    assert f'src="/clips/{first["events"][0]["clip_id"]}/frames/' in first["html"]
    assert client.get("/api/stream", params={"after": first["last_id"]}).json()["events"] == []
    with engine.db.session() as session:
        set_stage(
            session,
            scene.selected[2],
            "autolabelled",
            run_id="autolabel/r2/autolabel[1]",
            details={"model_id": "m-0000000002", "version": 9, "n_boxes": 0},
        )
    new = client.get("/api/stream", params={"after": first["last_id"]}).json()
    assert [e["clip_id"] for e in new["events"]] == [scene.selected[2]]
    assert "autolabelled by m-0000000002" in new["html"]
    assert "v0009.json: no such object" in new["html"]  # the card says why it has no picture
    page = client.get("/stream")
    assert page.text.count('class="card new"') == len(expected) + 1


def test_models_page_shows_lineage_metrics_and_edit_rate(client: TestClient, scene: Scene) -> None:
    page = client.get("/models")
    assert page.status_code == 200
    rows = re.findall(r'<span id="(m-\d+)" class="model">', page.text)
    assert rows == ["m-0000000002", "m-0000000001"]  # newest first
    assert '<a href="#m-0000000001">m-0000000001</a>' in page.text
    assert "ward@1" in page.text
    assert "0.470" in page.text
    assert "0.720" in page.text
    # The reviewer changed 2 of the 5 boxes m-0000000001 proposed; m-0000000002 labelled nothing yet.
    assert f"{100 * 2 / scene.boxes['v1']:.1f}%" in page.text
    assert "(2/5 boxes, 1 reviews)" in page.text
    assert "(0/0 boxes, 0 reviews)" in page.text
    # Regression set: mAP, person, bed (and wheelchair, never measured there); edge-case set: mAP,
    # person, wheelchair. A line for every series, none of them drawn through an unmeasured point.
    assert page.text.count("<polyline") == 7
    assert "<title>person 0.610 (40 boxes)</title>" in page.text
    assert "<title>bed 0.270 (support not recorded)</title>" in page.text  # a record without supports
    assert "<title>wheelchair 0.210 (14 boxes)</title>" in page.text
    assert "n/a (0 examples)" in page.text
    assert "wheelchair 0.000" not in page.text
    assert not re.search(r"<title>wheelchair [^<]*</title>", page.text.split("edge-case set</h2>")[0])
    # The gate's decision, naming the failed check, with the whole reason on hover.
    assert "refused: wheelchair AP on ward-edgecases@1 (14 boxes)" in page.text
    assert "0.210 against 0.500 of m-0000000001, fell 0.290" in page.text
    assert "m-0000000002 ✗" in page.text
    assert '0.350 <span class="muted">ward-edgecases@1</span>' in page.text
    # m-0000000001 had no edge-case set of its own: its score comes from m-0000000002's round, where it
    # was the promoted model on the same frames, and says so.
    edge_plot = page.text.split("edge-case set</h2>")[1]
    promoted_there = "0.500 (14 boxes), as the promoted model on ward-edgecases@1"
    assert f"<title>wheelchair {promoted_there}</title>" in edge_plot
    assert promoted_there in edge_plot.split("</svg>")[1]  # and in the table under the plot


def test_an_empty_engine_renders_every_page(client: TestClient) -> None:
    for path in ("/", "/clips", "/videos", "/stream", "/models", "/api/status"):
        assert client.get(path).status_code == 200, path
    assert "0 videos, 0 clips" in client.get("/").text
    assert "No evaluated models yet." in client.get("/models").text
    assert client.get(f"/videos/{VIDEO_ID}").status_code == 404
    missing = client.get("/clips/0123456789abcdef-0000000")
    assert missing.status_code == 404
    assert "no clip" in missing.json()["detail"]


def test_broken_files_are_reported_on_the_clip_page(
    client: TestClient, engine: Context, scene: Scene
) -> None:
    engine.store.write_bytes(annotation_key(scene.reviewed, 2), b"{not json")
    engine.store.delete(f"clips/{scene.reviewed}/meta.json")
    page = client.get(f"/clips/{scene.reviewed}")
    assert page.status_code == 200
    assert "annotation v2 unreadable" in page.text
    assert "frames unavailable" in page.text
    assert _clip_data(page.text)["panels"] == ["1"]


def test_status_json_keeps_its_shape(client: TestClient, scene: Scene) -> None:
    status = client.get("/api/status").json()
    assert (status["videos"], status["clips"], status["promoted_model"]) == (1, 6, "m-0000000001")
    assert status["stages"]["rejected"] == 6 - BUDGET
    history = client.get(f"/api/clips/{scene.reviewed}").json()
    assert history["events"][0]["run_id"] == INGEST_RUN
    assert EXPORT_RUN in [e["run_id"] for e in history["events"]]


def test_the_plugin_requires_an_airflow_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every route of the mounted app refuses anonymous (401) and forged (403) requests."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret")
    plugin = runpy.run_path(str(REPO / "plugins" / "dataengine_plugin.py"))["DataEnginePlugin"]
    (spec,) = plugin.fastapi_apps
    assert spec["url_prefix"] == "/dataengine"
    assert plugin.external_views[0]["href"] == "/dataengine/"
    from airflow.api_fastapi.app import init_auth_manager

    init_auth_manager()  # what the API server does at start; it checks the tokens
    anonymous = TestClient(spec["app"])
    paths = [
        route.path.replace("{clip_id}", f"{VIDEO_ID}-0000000")
        .replace("{video_id}", VIDEO_ID)
        .replace("{name}", "000000.jpg")
        for route in spec["app"].routes
        if isinstance(route, APIRoute)
    ]
    assert len(paths) >= 10
    assert f"/clips/{VIDEO_ID}-0000000/frames/000000.jpg" in paths
    for path in paths:
        assert anonymous.get(path).status_code == 401, path
        anonymous.cookies.set("_token", "eyJhbGciOiJIUzUxMiJ9.e30.forged")
        assert anonymous.get(path).status_code == 403, path
        anonymous.cookies.clear()
        bearer = anonymous.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert bearer.status_code == 403, path


def test_funnel_lists_recent_quarantine(sqlite_client: TestClient, ctx: Context) -> None:
    assert "Nothing quarantined." in sqlite_client.get("/").text
    clip_id = f"{VIDEO_ID}-0000100"
    with ctx.db.session() as session:
        quarantine(
            session,
            kind="clip",
            input=f"clips/{clip_id}/frames/000005.jpg",
            reason="truncated <JPEG>",
            stage="triggers",
            video_id=VIDEO_ID,
            clip_id=clip_id,
            run_id="detect_triggers/r/score",
        )
    page = sqlite_client.get("/").text
    assert "truncated &lt;JPEG&gt;" in page
    assert f'<a href="/clips/{clip_id}">{clip_id}</a>' in page
    assert '">quarantined</a></td><td>1</td>' in page  # the clip left the funnel


def test_status_api_lists_the_last_20_quarantined_inputs(sqlite_client: TestClient, ctx: Context) -> None:
    """``/api/status`` reads the newest 20 by id: the same items, in the same order (oldest first), as
    the last 20 of the whole list it used to load."""
    with ctx.db.session() as session:
        for n in (*range(24, 19, -1), *range(20)):  # ids and names in different orders
            quarantine(
                session, kind="video", input=f"landing/bad-{n:02d}.mp4", reason=f"r{n}", stage="ingest"
            )
    status = sqlite_client.get("/api/status").json()
    with ctx.db.session() as session:
        assert status["quarantine"] == quarantine_list(session)[-20:]
    assert [item["input"] for item in status["quarantine"]] == [f"landing/bad-{n:02d}.mp4" for n in range(20)]
    assert status["quarantined"] == 25


def test_funnel_counts_the_events_of_its_window_and_new_ones(sqlite_client: TestClient, ctx: Context) -> None:
    """A new event shows on the next request; an old one only in a window that holds its day."""

    def day_cells(query: str = "") -> tuple[str, list[str]]:
        page = sqlite_client.get("/" + query).text
        row = re.search(r'<table class="days">.*?</tr><tr><td>([\d-]+)</td>(.*?)</tr>', page)
        assert row
        cells = re.findall(r"<td>(?:<b>(\d+)</b>|<span class=\"muted\">0</span>)", row.group(2))
        return row.group(1), cells

    assert day_cells()[1][:3] == ["6", "6", "3"]  # ingested, scored, selected
    clip_id = f"{VIDEO_ID}-0000000"
    with ctx.db.session() as session:
        set_stage(session, clip_id, "selected", run_id="detect_triggers/r9/select")
    assert day_cells()[1][:3] == ["6", "6", "4"]
    old_day = datetime.now(UTC).date() - timedelta(days=40)
    with ctx.db.session() as session:
        session.add(
            ClipEvent(
                clip_id=clip_id,
                stage="reviewed",
                status="ok",
                run_id="review_import/old/import",
                details={},
                at=datetime.combine(old_day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12),
            )
        )
    assert day_cells()[0] != old_day.isoformat()  # 40 days back is outside the default 14 days
    day, cells = day_cells(f"?until={old_day.isoformat()}&days=1")
    assert day == old_day.isoformat()
    assert cells.count("1") == 1  # only the reviewed column has an event that day


def test_models_page_shows_an_imported_model_and_where_it_came_from(
    sqlite_client: TestClient, ctx: Context, tmp_path: Path
) -> None:
    from dataengine.training.model_import import ModelImportRequest, import_model
    from model_files import torchvision_state_dict

    weights = torchvision_state_dict(tmp_path / "team.pth", arch="tiny_fasterrcnn", num_classes=3)
    report = import_model(ctx, ModelImportRequest(arch="tiny_fasterrcnn", weights=str(weights)))
    page = sqlite_client.get("/models")
    assert page.status_code == 200
    assert report.model_id in page.text
    assert f'imported: team.pth <span class="muted">sha256 {report.source_sha256[:12]}' in page.text
    assert "promoted" in page.text


HOSTILE = '<script>alert("x")</script>'
HOSTILE_ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
TAG = '<img src=x onerror="alert(1)">'  # no "/": a run id's parts are split on it
TAG_ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"


def test_a_hostile_name_is_escaped_through_every_template(sqlite_client: TestClient, ctx: Context) -> None:
    """Names from videos, triggers, runs and quarantine reach the pages as text, never as markup."""
    from dataengine.airflow.ui.charts import line_plot_svg
    from dataengine.airflow.ui.render import render
    from dataengine.lineage.model_registry import register_model
    from dataengine.lineage.triggers import record_trigger_score
    from dataengine.lineage.videos import register_video

    clip_id = f"{VIDEO_ID}-0000100"
    airflow_run = f"{TAG}/{TAG}/task"
    with ctx.db.session() as session:
        register_video(session, video_id="f" * 16, uri="landing/x.mp4", sha256="f" * 64, camera=HOSTILE)
        record_trigger_score(session, clip_id=clip_id, trigger=HOSTILE, score=0.5, run_id=airflow_run)
        set_stage(session, clip_id, "scored", run_id=airflow_run, details={"scores": {HOSTILE: 0.5}})
        set_stage(session, clip_id, "selected", run_id=f"cli/{TAG}", actor=HOSTILE)
        quarantine(session, kind="clip", input=HOSTILE, reason=HOSTILE, stage="triggers", clip_id=clip_id)
        register_model(
            session,
            model_id="m-0000000009",
            checkpoint_uri="models/m-0000000009/model.pt",
            dataset_id=None,
            parent_model_id=None,
            metrics={
                "decision": HOSTILE,
                "held_out": HOSTILE,
                "eval": {"map": 0.5, "per_class": {HOSTILE: 0.5}},
            },
        )
    # (path, least count of the escaped name, least count of the escaped run part)
    pages = [
        ("/", 2, 3),  # quarantine input and reason; the runs' links in the day table (title, text)
        ("/videos", 1, 0),  # the camera
        (f"/videos/{VIDEO_ID}", 2, 0),  # the trigger: its legend entry and its one point's title
        (f"/clips/{clip_id}", 2, 4),  # the trigger row, the actor; the Airflow run and the CLI run
        ("/stream", 1, 3),  # the score's name; the run link's title and text
        ("/models", 5, 0),  # decision, held-out set; the class in the plot's legend, its point, its table row
    ]
    for path, names, runs in pages:
        page = sqlite_client.get(path)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text, path
        assert TAG not in page.text, path
        assert page.text.count(HOSTILE_ESCAPED) >= names, path
        assert page.text.count(TAG_ESCAPED) >= runs, path
    # An Airflow link quotes the run's parts into its URL.
    quoted = "%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E"
    assert f'href="/dags/{quoted}/runs/{quoted}/tasks/task"' in sqlite_client.get("/stream").text
    api = sqlite_client.get("/api/stream").json()["html"]
    assert HOSTILE not in api
    assert HOSTILE_ESCAPED in api
    plot = line_plot_svg(["m-1"], {HOSTILE: [0.5]}, notes={HOSTILE: [HOSTILE]})
    assert HOSTILE not in plot
    assert f"<title>{HOSTILE_ESCAPED} {HOSTILE_ESCAPED}</title>" in plot
    assert str(render("unavailable.html", error=HOSTILE)) == (
        f"<h1>dataengine is unavailable</h1><p>{HOSTILE_ESCAPED}</p>"
    )
