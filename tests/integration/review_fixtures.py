"""Fixtures of the review tests: hand-made autolabelled clips, and a real Label Studio server.

Loaded by the review test modules through ``pytest_plugins = ["review_fixtures"]``.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataengine.clips import ClipMeta, clip_id_for, encode_jpeg, frame_key, frame_name, video_key, write_meta
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame, save_annotations
from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import register_clip, set_stage
from dataengine.lineage.videos import get_video, register_video

REPO = Path(__file__).resolve().parents[2]
LABELSTUDIO_BIN = REPO / ".venv-labelstudio" / "bin" / "label-studio"
#: The first start migrates a fresh database: minutes on a busy 2-core machine.
LABELSTUDIO_START_TIMEOUT = 900

VIDEO_ID = "0123456789abcdef"
CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 64, 48
SAMPLED = [0, 5, 10]
FPS = 10.0
MODEL = "m-test-01"


def prelabels() -> list[Frame]:
    """Pre-labels on the sampled frames: two tracks on frame 0, one on 5, a labelled negative on 10."""
    boxes = {
        0: [
            Box("person", (4.0, 4.0, 20.0, 40.0), track=1, score=0.9),
            Box("bed", (30.0, 20.0, 60.0, 44.0), track=2, score=0.8),
        ],
        5: [Box("person", (6.0, 4.0, 22.0, 40.0), track=1, score=0.85)],
        10: [],
    }
    return [Frame(index=i, image=frame_name(i), width=WIDTH, height=HEIGHT, boxes=boxes[i]) for i in SAMPLED]


def add_autolabelled_clip(
    ctx: Context,
    start_frame: int,
    *,
    model: str = MODEL,
    source_key: str = "landing/cam01/video.mp4",
    stage: str = "autolabelled",
) -> str:
    """A clip at stage ``autolabelled``: frames, meta.json, clip.mp4 bytes and an autolabel v1 in lineage.

    With another ``stage`` (e.g. ``selected``) the clip has no annotation version at all.

    The review platforms here never decode the video, so ``clip.mp4`` holds placeholder bytes.
    ``source_key`` is the landing video the clip says it was cut from.
    """
    clip_id = clip_id_for(VIDEO_ID, start_frame)
    for index in SAMPLED:
        ctx.store.write_bytes(frame_key(clip_id, index), encode_jpeg(np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    ctx.store.write_bytes(video_key(clip_id), b"placeholder video bytes")
    meta = ClipMeta(
        clip_id=clip_id,
        video_id=VIDEO_ID,
        source_uri=ctx.store.uri(source_key),
        start_frame=start_frame,
        end_frame=start_frame + 20,
        start_time=start_frame / FPS,
        end_time=(start_frame + 20) / FPS,
        fps=FPS,
        width=WIDTH,
        height=HEIGHT,
        sampled=SAMPLED,
    )
    write_meta(ctx.store, meta)
    labels = ClipAnnotations(
        clip_id=clip_id,
        version=1,
        source="autolabel",
        classes=CLASSES,
        frames=prelabels(),
        producer={"models": [model]},
    )
    saved = save_annotations(ctx.store, labels) if stage == "autolabelled" else None
    with ctx.db.session() as session:
        if get_video(session, VIDEO_ID) is None:
            register_video(
                session, video_id=VIDEO_ID, uri=meta.source_uri, sha256=VIDEO_ID * 4, status="ingested"
            )
        register_clip(
            session,
            clip_id=clip_id,
            video_id=VIDEO_ID,
            start_frame=start_frame,
            end_frame=meta.end_frame,
            start_time=meta.start_time,
            n_frames=20,
            uri=ctx.store.uri(f"clips/{clip_id}"),
        )
        if saved is not None:
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
        set_stage(session, clip_id, stage, run_id="test/setup")
    return clip_id


@pytest.fixture
def make_clip() -> Callable[..., str]:
    """``make_clip(ctx, start_frame)``: an autolabelled clip with hand-made pre-labels."""
    return add_autolabelled_clip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + LABELSTUDIO_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Label Studio exited with {process.returncode}; see {log}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(2)
    raise RuntimeError(
        f"Label Studio did not answer {url}/health in {LABELSTUDIO_START_TIMEOUT} s; see {log}"
    )


def personal_access_token(url: str, email: str, password: str) -> str:
    """Log in through the web form and create a personal access token (legacy tokens are off in 1.23)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{url}/user/login/")

    def csrf() -> str:
        return next(cookie.value for cookie in jar if cookie.name == "csrftoken" and cookie.value)

    form = urllib.parse.urlencode({"email": email, "password": password, "csrfmiddlewaretoken": csrf()})
    opener.open(
        urllib.request.Request(f"{url}/user/login/", data=form.encode(), headers={"Referer": f"{url}/"})
    )
    request = urllib.request.Request(
        f"{url}/api/token/",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json", "X-CSRFToken": csrf(), "Referer": f"{url}/"},
    )
    with opener.open(request) as reply:
        return str(json.loads(reply.read())["token"])


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real Label Studio on localhost with a fresh data folder; ``{"url", "token"}``. Stopped afterwards."""
    if not LABELSTUDIO_BIN.exists():
        pytest.skip(
            f"Label Studio is not installed in {LABELSTUDIO_BIN.parent.parent}: run `make labelstudio`"
        )
    data_dir = tmp_path_factory.mktemp("labelstudio")
    # Every test's store is below the base temp folder: the document root of local files serving.
    document_root = str(tmp_path_factory.getbasetemp().resolve())
    log = data_dir / "server.log"
    port, email, password = _free_port(), "reviewer@example.com", "review-pass-123"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # No network here: keep it from trying to report errors or look up its latest version.
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": document_root,
    }
    command = [
        str(LABELSTUDIO_BIN),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    command += ["--username", email, "--password", password, "--data-dir", str(data_dir)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log)
        token = personal_access_token(url, email, password)
        yield {
            "url": url,
            "token": token,
            "email": email,
            "password": password,
            "document_root": document_root,
        }
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
