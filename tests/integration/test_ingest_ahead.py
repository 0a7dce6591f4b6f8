"""Decoding ahead (ingest/ahead.py): ``dataengine ingest FILE`` starts decoding its first input before
the database layer is loaded. The objects and lineage rows are the ones the pipeline writes when it
decodes the file itself; inputs it cannot take fall back to that path; memory stays bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ahead as ahead_module
from dataengine.ingest import ingest
from dataengine.ingest.ahead import DecodeAhead
from dataengine.ingest.decode import DecodeLog, decode_frames
from dataengine.ingest.prepare import ingest_params, prepare_video
from dataengine.synthetic import SyntheticScene
from dataengine.synthetic.variants import corrupt_frames, render_variant

runner = CliRunner()
_ENV = {"DATAENGINE_CLIP_SECONDS": "2", "DATAENGINE_SAMPLE_FPS": "2"}


def _videos(folder: Path) -> list[Path]:
    first = folder / "cam01" / "2026-11-22" / "080000.mp4"
    second = folder / "cam02" / "2026-11-22" / "090000.mp4"
    render_variant(first, scene=SyntheticScene(seed=3, n_frames=110, fps=25.0), gop=25, bframes=2)
    render_variant(second, scene=SyntheticScene(seed=4, n_frames=60, fps=25.0), gop=20, bframes=3)
    return [first, second]


def _state(ctx: Context, root: Path) -> tuple[dict[str, bytes], list[Any]]:
    """Every object in the store and the lineage rows, without wall-clock times or run ids."""
    objects = {key: ctx.store.read_bytes(key) for key in ctx.store.list() if not key.startswith("_")}
    for key in [k for k in objects if k.startswith("quarantine/")]:
        record = json.loads(objects[key])
        record.pop("at")
        objects[key] = json.dumps(record, sort_keys=True).encode()
    queries = [
        "SELECT id, video_id, start_frame, end_frame, start_time, n_frames, uri, stage FROM clips",
        "SELECT clip_id, stage, status, details FROM clip_events",
        "SELECT id, uri, sha256, camera, recorded_at, duration, fps, width, height, status, error "
        "FROM videos",
        "SELECT kind, input, stage, reason FROM quarantine",
    ]
    with ctx.db.session() as session:
        rows = [
            sorted(
                tuple(v.replace(str(root), "ROOT") if isinstance(v, str) else v for v in row)
                for row in session.execute(text(q))
            )
            for q in queries
        ]
    return objects, rows


def _by_cli(
    root: Path, inputs: list[Path], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> tuple[tuple[dict[str, bytes], list[Any]], list[bool]]:
    """``dataengine ingest --json INPUTS`` in a fresh store; also whether decoding ahead was taken."""
    taken: list[bool] = []
    real_take = DecodeAhead.take

    def take(self: DecodeAhead, *args: Any, **kwargs: Any) -> Any:
        result = real_take(self, *args, **kwargs)
        taken.append(result is not None)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(ahead_module.DecodeAhead, "take", take)
        for name, value in {**_ENV, **env}.items():
            patch.setenv(name, value)
        patch.setenv("DATAENGINE_DATABASE_URL", f"sqlite:///{root / 'lineage.db'}")
        patch.setenv("DATAENGINE_STORAGE_URL", f"file://{root / 'store'}")
        result = runner.invoke(app, ["ingest", "--json", *map(str, inputs)])
        assert result.exit_code in (0, 1), result.output
        ctx = Context.create()
        try:
            return _state(ctx, root), taken
        finally:
            ctx.close()


def _by_pipeline(
    settings: Settings, root: Path, inputs: list[Path], env: dict[str, str]
) -> tuple[dict[str, bytes], list[Any]]:
    changes: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'lineage.db'}",
        "storage_url": f"file://{root / 'store'}",
        "clip_seconds": 2.0,
        "sample_fps": 2.0,
    }
    if env.get("DATAENGINE_INGEST_SKIP_FRAMES") == "false":
        changes["ingest_skip_frames"] = False
    if env.get("DATAENGINE_SPLIT_ON_SCENE_CUTS") == "true":
        changes["split_on_scene_cuts"] = True
    ctx = Context.create(settings.model_copy(update=changes))
    try:
        ingest(ctx, [str(path) for path in inputs])
        return _state(ctx, root)
    finally:
        ctx.close()


@pytest.mark.parametrize(
    "env",
    [{}, {"DATAENGINE_INGEST_SKIP_FRAMES": "false"}, {"DATAENGINE_SPLIT_ON_SCENE_CUTS": "true"}],
    ids=["skipping", "every-frame", "scene-cuts"],
)
def test_the_cli_decoding_ahead_writes_what_the_pipeline_writes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    inputs = _videos(tmp_path / "videos")
    (objects, rows), taken = _by_cli(tmp_path / "cli", inputs, monkeypatch, env)
    assert taken == [True, False]  # the first input was decoded ahead; the second is not started
    expected_objects, expected_rows = _by_pipeline(settings, tmp_path / "pipeline", inputs, env)
    assert sorted(objects) == sorted(expected_objects)
    assert sum(key.endswith(".jpg") for key in objects) >= 12
    assert objects == expected_objects
    assert rows == expected_rows
    assert len(rows[0]) >= 4


def test_damage_is_found_the_same_when_decoded_ahead(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = tmp_path / "videos" / "cam03" / "2026-11-22" / "080000.mp4"
    render_variant(video, scene=SyntheticScene(seed=5, n_frames=100, fps=25.0), gop=25)
    corrupt_frames(video, [35])
    (objects, rows), taken = _by_cli(tmp_path / "cli", [video], monkeypatch, {})
    assert taken == [True]
    assert (objects, rows) == _by_pipeline(settings, tmp_path / "pipeline", [video], {})
    assert [row[0] for row in rows[3]] == ["gap"]


def test_inputs_it_cannot_take_go_the_usual_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = _videos(tmp_path / "videos")[0]
    bad = tmp_path / "videos" / "notes.mp4"
    bad.write_text("this is not a video")
    (_, rows), taken = _by_cli(tmp_path / "cli", [bad, video], monkeypatch, {})
    assert taken == [False, False]  # started on the bad file, which it could not prepare
    assert len(rows[3]) == 1
    assert rows[3][0][3].startswith(f"file://{bad} is a text file, not a video")
    assert len(rows[0]) == 3  # the good video was decoded by the pipeline
    # Ingested already: the run skips it, and stops the decoder it started for nothing.
    (_, again), taken = _by_cli(tmp_path / "cli", [video], monkeypatch, {})
    assert taken == []
    assert again == rows
    # A repair cuts with the clip length recorded at first ingest: other parameters, so not taken.
    store = tmp_path / "cli" / "store"
    for jpg in sorted(store.rglob("*.jpg"))[:1]:
        jpg.unlink()
    (_, repaired), taken = _by_cli(tmp_path / "cli", [video], monkeypatch, {"DATAENGINE_CLIP_SECONDS": "3"})
    assert taken == [False]
    assert [r[0] for r in repaired[0]] == [r[0] for r in rows[0]]


def test_the_decoder_waits_when_enough_frames_with_pixels_wait(settings: Settings, tmp_path: Path) -> None:
    video = _videos(tmp_path / "videos")[0]
    params = ingest_params(settings.model_copy(update={"ingest_skip_frames": False}), 2.0, 2.0)
    ahead = DecodeAhead(video, params, held=3)
    try:
        deadline = time.monotonic() + 30
        while ahead._slots._value > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert ahead._thread.is_alive()  # waiting for room, not finished
        assert ahead._slots._value == 0
        taken = ahead.take(video, params)
        assert taken is not None
        _, frames, log = taken
        got = [(d.number, d.corrupt, d.frame is not None) for d in frames]
    finally:
        ahead.close()
    reference = prepare_video(video, name=str(video), params=params)
    try:
        assert reference.needed is not None
        expected = [
            (d.number, d.corrupt, bool(reference.needed[d.number]))
            for d in decode_frames(
                reference.container, reference.info.stream, reference.index, DecodeLog(), reference.skip
            )
        ]
    finally:
        reference.close()
    assert got == expected
    assert len(got) == 110  # every frame decoded; only the sampled ones kept their pixels
    assert sum(kept for *_, kept in got) == 9  # 2 fps in clips of 2, 2 and 0.4 s
    assert log.frames == 110
