"""The CLI contract of ARCHITECTURE §7: commands, JSON shapes and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.lineage.db import HEAD_REVISION
from dataengine.storage import ObjectStore
from dataengine.synthetic import write_landing

runner = CliRunner()


@pytest.fixture
def engine_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'lineage.db'}")
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("DATAENGINE_CLIP_SECONDS", "1")
    return ObjectStore(f"file://{tmp_path / 'store'}")


def call(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    if "--json" in args:
        return json.loads(result.stdout)
    return result.output


def test_init_and_empty_status(engine_env: ObjectStore) -> None:
    assert f"lineage database at revision {HEAD_REVISION};" in call("init")
    status = call("status", "--json")
    assert status["videos"] == 0
    assert status["clips"] == 0
    assert status["quarantined"] == 0
    assert set(status["stages"]) >= {"ingested", "scored", "selected", "in_dataset", "quarantined"}
    assert status["models"] == []
    assert call("clips", "list", "--json") == []
    assert call("quarantine", "list", "--json") == []


def test_ingest_then_list_and_show(engine_env: ObjectStore, tmp_path: Path) -> None:
    write_landing(engine_env, n_videos=1, seed=3, seconds=2.0, fps=10.0)
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    out = call("ingest")
    assert "clip" in out
    ingest = call("ingest", str(bad), "--json", code=1)
    assert ingest["clips"] == []
    assert len(ingest["quarantined"]) == 1

    clips = call("clips", "list", "--json")
    assert len(clips) == 2
    first = clips[0]
    assert set(first) >= {"clip_id", "video_id", "start_frame", "end_frame", "n_frames", "stage"}
    assert (first["start_frame"], first["end_frame"], first["n_frames"], first["stage"]) == (
        0,
        10,
        10,
        "ingested",
    )
    assert call("clips", "list", "--stage", "selected", "--json") == []
    assert [c["clip_id"] for c in call("clips", "list", "--video", first["video_id"], "--json")] == [
        c["clip_id"] for c in clips
    ]

    shown = call("clip", "show", first["clip_id"], "--json")
    assert set(shown) >= {"clip", "events", "annotations", "triggers"}
    assert shown["clip"]["clip_id"] == first["clip_id"]
    assert [(e["stage"], e["status"]) for e in shown["events"]] == [("ingested", "ok")]
    assert set(shown["events"][0]) >= {"stage", "status", "at", "run_id", "details"}
    text = call("clip", "show", first["clip_id"])
    assert "history:" in text
    assert "ingested" in text

    quarantined = call("quarantine", "list", "--json")
    assert len(quarantined) == 1
    assert set(quarantined[0]) >= {"input", "video_id", "reason"}
    assert "notes.mp4" in quarantined[0]["input"]
    assert "text file" in quarantined[0]["reason"]

    status = call("status", "--json")
    assert (status["videos"], status["clips"], status["quarantined"]) == (2, 2, 1)
    assert status["stages"]["ingested"] == 2


def test_triggers_without_a_model_skip_model_triggers(engine_env: ObjectStore) -> None:
    write_landing(engine_env, n_videos=1, seed=4, seconds=2.0, fps=10.0)
    call("ingest")
    report = call("triggers", "--budget-count", "1", "--json")
    assert len(report["scored"]) == 2
    assert len(report["selected"]) == 1
    assert len(report["rejected"]) == 1
    assert "flicker" in report["skipped_triggers"]


def test_errors_are_one_clear_line(engine_env: ObjectStore) -> None:
    result = runner.invoke(app, ["clip", "show", "0000000000000000-0000000"])
    assert result.exit_code == 1
    assert "error: no clip '0000000000000000-0000000'" in result.output
    result = runner.invoke(app, ["autolabel"])
    assert result.exit_code == 1
    assert "no promoted model" in result.output


def test_synthetic_renders_into_landing(engine_env: ObjectStore) -> None:
    out = call("synthetic", "--videos", "2", "--seconds", "1", "--seed", "5")
    keys = out.split()
    assert len(keys) == 2
    assert all(k.startswith("landing/cam") and k.endswith(".mp4") for k in keys)
    assert all(engine_env.exists(k) and engine_env.exists(k[:-4] + ".gt.json") for k in keys)
