"""The monitoring view in a real browser: headless chromium, logged in to a real Airflow API server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from ui_server import AirflowUI, launched_chromium, missing, running_airflow_ui

from dataengine.formats import Box, load_annotations, save_annotations
from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import clip_events, set_stage
from dataengine.lineage.models import Clip, ClipEvent
from ui_scene import VIDEO_ID

pytestmark = [pytest.mark.browser, pytest.mark.airflow]
MISSING = missing()
if MISSING:
    pytestmark.append(pytest.mark.skip(reason=MISSING))


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    with running_airflow_ui(tmp_path_factory.mktemp("airflow-ui")) as ui:
        yield ui


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(airflow_ui: AirflowUI, browser: Any) -> Iterator[Any]:
    """A browser tab logged in through Airflow's own login form."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.goto(f"{airflow_ui.url}/")
    tab.wait_for_url("**/auth/login**")
    tab.locator("input[name=username]").fill(airflow_ui.user)
    tab.locator("input[name=password]").fill(airflow_ui.password)
    tab.locator("button[type=submit]").click()
    tab.wait_for_function("document.cookie !== undefined")
    tab.wait_for_url(lambda url: "/auth/login" not in url)
    assert any(cookie["name"] == "_token" for cookie in context.cookies())
    yield tab
    context.close()


def _server_ms(tab: Any) -> float:
    """How long the server took to answer the page's own request."""
    timing = tab.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return t.responseStart - t.requestStart; })()"
    )
    return float(timing)


def _open(tab: Any, airflow_ui: AirflowUI, path: str) -> None:
    response = tab.goto(f"{airflow_ui.url}/dataengine{path}")
    assert response.status == 200, path
    tab.wait_for_load_state("networkidle")
    assert _server_ms(tab) < 1000, path


def _shot(tab: Any, airflow_ui: AirflowUI, name: str) -> None:
    tab.screenshot(path=str(airflow_ui.screenshots / f"ui-{name}.png"), full_page=True)


def test_anonymous_browsers_are_refused(airflow_ui: AirflowUI, browser: Any) -> None:
    context = browser.new_context()
    tab = context.new_page()
    clip = airflow_ui.scene.reviewed
    for path in ("/", "/models", f"/clips/{clip}", f"/clips/{clip}/frames/000000.jpg", "/api/stream"):
        assert tab.goto(f"{airflow_ui.url}/dataengine{path}").status == 401, path
    tab.goto(f"{airflow_ui.url}/plugin/dataengine")
    tab.wait_for_url("**/auth/login**")  # the Airflow UI sends strangers to its login page
    context.close()


def test_the_view_sits_in_the_airflow_ui_and_matches_the_lineage_db(airflow_ui: AirflowUI, page: Any) -> None:
    page.goto(f"{airflow_ui.url}/plugin/dataengine")
    frame = page.frame_locator("iframe")
    frame.locator("h1").filter(has_text="Data engine funnel").wait_for()
    with airflow_ui.ctx.db.session() as session:
        counts = dict(session.execute(select(Clip.stage, func.count()).group_by(Clip.stage)).all())
    for stage in ("selected", "autolabelled", "in_dataset"):
        assert frame.locator(f'[data-stage="{stage}"]').inner_text() == str(counts.get(stage, 0))
    assert page.get_by_role("link", name="Data engine").count() >= 1  # the nav entry of external_views
    _shot(page, airflow_ui, "airflow")


def test_click_through_from_the_funnel_to_a_clip_and_scrub(airflow_ui: AirflowUI, page: Any) -> None:
    _open(page, airflow_ui, "/")
    _shot(page, airflow_ui, "funnel")
    run = page.locator("a.run").first.get_attribute("href")
    assert run.startswith("/dags/")
    assert "/runs/" in run
    page.locator("table.funnel a", has_text="in_dataset").click()
    page.wait_for_url("**/clips?stage=in_dataset")
    clip_id = airflow_ui.scene.reviewed
    assert page.locator("a.clip").all_inner_texts() == [clip_id]
    page.locator("a.clip").first.click()
    page.wait_for_url(f"**/clips/{clip_id}")
    assert page.locator("h1").inner_text() == f"Clip {clip_id}"
    with airflow_ui.ctx.db.session() as session:
        stages = [event.stage for event in clip_events(session, clip_id)]
    assert page.locator("table.events tr td:nth-child(2)").all_inner_texts() == stages
    auto, review = (load_annotations(airflow_ui.ctx.store, clip_id, v) for v in (1, 2))
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # the third sampled frame, index 10
    assert page.locator("#frame-label").inner_text().startswith("frame 10 ")
    assert page.locator("#img-0").get_attribute("src").endswith("/frames/000010.jpg")
    page.wait_for_function(
        "document.getElementById('img-1').complete && document.getElementById('img-1').naturalWidth > 0"
    )
    for panel, labels in ((0, auto), (1, review)):
        boxes = next(f.boxes for f in labels.frames if f.index == 10)
        assert page.locator(f"#svg-{panel} rect").count() == len(boxes)
    _shot(page, airflow_ui, "clip")


def test_trigger_timeline_links_selected_clips(airflow_ui: AirflowUI, page: Any) -> None:
    _open(page, airflow_ui, "/videos")
    page.locator("a.video", has_text=VIDEO_ID).click()
    page.wait_for_url(f"**/videos/{VIDEO_ID}")
    shaded = page.locator("rect.sel")
    assert sorted(shaded.evaluate_all("els => els.map(e => e.dataset.clip)")) == sorted(
        airflow_ui.scene.selected
    )
    assert page.locator("line.budget").count() == 1
    _shot(page, airflow_ui, "timeline")
    shaded.first.click()
    page.wait_for_url("**/clips/*")
    assert page.url.rsplit("/", 1)[1] in airflow_ui.scene.selected


def test_stream_shows_new_predictions_as_they_arrive(airflow_ui: AirflowUI, page: Any) -> None:
    _open(page, airflow_ui, "/stream")
    ctx = airflow_ui.ctx
    with ctx.db.session() as session:
        shown = session.scalar(
            select(func.count()).select_from(ClipEvent).where(ClipEvent.stage.in_(("scored", "autolabelled")))
        )
    assert page.locator(".card").count() == shown
    clip_id = airflow_ui.scene.selected[2]
    labels = load_annotations(ctx.store, airflow_ui.scene.autolabelled, 1)
    labels.clip_id, labels.producer = clip_id, {"models": ["m-0000000002"]}
    labels.frames[0].boxes.append(Box("bed", (10.0, 10.0, 90.0, 50.0), track=7, score=0.8))
    saved = save_annotations(ctx.store, labels)
    with ctx.db.session() as session:
        record_annotation(
            session,
            clip_id=clip_id,
            version=1,
            uri=saved.uri,
            sha256=saved.sha256,
            source="autolabel",
            parent_version=None,
            producer=labels.producer,
            n_frames=saved.n_frames,
            n_boxes=saved.n_boxes,
        )
        event = set_stage(
            session,
            clip_id,
            "autolabelled",
            run_id="autolabel/manual__live/autolabel[0]",
            details={"model_id": "m-0000000002", "version": 1, "n_boxes": saved.n_boxes},
        )
        event_id = event.id
    card = page.locator(f'.card[data-event="{event_id}"]')
    card.wait_for(timeout=15000)  # the page polls every 3 s
    assert "autolabelled by m-0000000002" in card.inner_text()
    assert card.locator("svg rect").count() == max(len(f.boxes) for f in labels.frames)
    _shot(page, airflow_ui, "stream")


def test_models_page(airflow_ui: AirflowUI, page: Any) -> None:
    _open(page, airflow_ui, "/models")
    assert page.locator("span.model").all_inner_texts() == ["m-0000000002", "m-0000000001"]
    assert "40.0%" in page.locator("table").first.inner_text()
    assert page.locator("svg.chart polyline").count() == 7  # both held-out sets, per class and mAP
    assert "n/a (0 examples)" in page.locator("table.classes").first.inner_text()
    _shot(page, airflow_ui, "models")
