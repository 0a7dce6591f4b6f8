"""Frames left out of the decoder (ingest/skipping.py): the same clips, JPEGs, meta.json and lineage rows
come out as when every frame is decoded; damage in a frame a sample needs is still found."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from dataengine.clips import video_id_for
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.ingest import ingest
from dataengine.ingest.index import IDR, NON_REFERENCE, REFERENCE, scan
from dataengine.ingest.plan import plan_clips
from dataengine.ingest.skipping import frames_to_skip, needed_frames
from dataengine.synthetic import SyntheticScene
from dataengine.synthetic.variants import corrupt_frames, render_variant


def _ingest(
    settings: Settings, root: Path, video: Path, **changes: Any
) -> tuple[dict[str, bytes], list[Any]]:
    """Every object the ingest wrote, and its clip rows (without times), in a fresh store and database."""
    update = {
        "database_url": f"sqlite:///{root / 'lineage.db'}",
        "storage_url": f"file://{root / 'store'}",
        **changes,
    }
    ctx = Context.create(settings.model_copy(update=update), run_id="test/skipping")
    try:
        ingest(ctx, [str(video)], clip_seconds=2.0, sample_fps=2.0)
        objects = {key: ctx.store.read_bytes(key) for key in ctx.store.list() if not key.startswith("_")}
        for key in [k for k in objects if k.startswith("quarantine/")]:
            record = json.loads(objects[key])
            record.pop("at")  # when it was written
            objects[key] = json.dumps(record, sort_keys=True).encode()
        with ctx.db.session() as session:
            query = "SELECT id, video_id, start_frame, end_frame, n_frames, stage FROM clips ORDER BY id"
            rows = [tuple(row) for row in session.execute(text(query))]
            rows += [
                tuple(row) for row in session.execute(text("SELECT kind, input, reason FROM quarantine"))
            ]
    finally:
        ctx.close()
    return objects, rows


@pytest.mark.parametrize(("gop", "bframes"), [(20, 3), (25, 2)])
def test_skipping_frames_gives_byte_identical_output(
    settings: Settings, tmp_path: Path, gop: int, bframes: int
) -> None:
    video = tmp_path / "cam01" / "2026-11-22" / "080000.mp4"
    render_variant(video, scene=SyntheticScene(seed=3, n_frames=110, fps=25.0), gop=gop, bframes=bframes)
    index = scan(video, name=str(video), fps=25.0)
    assert index.picture is not None
    assert {NON_REFERENCE, REFERENCE, IDR} <= set(index.picture.tolist())
    plan = plan_clips(index, clip_seconds=2.0, tolerance=1.0)
    needed = needed_frames(index, plan, sample_fps=2.0, copyable=True)
    skip = frames_to_skip(index, needed)
    assert skip is not None
    assert int(skip.sum()) >= 30  # more than a quarter of the 110 frames

    every, every_rows = _ingest(settings, tmp_path / "every", video, ingest_skip_frames=False)
    skipped, skipped_rows = _ingest(settings, tmp_path / "skipped", video)
    assert sorted(every) == sorted(skipped)
    assert sum(key.endswith(".jpg") for key in every) == int(needed.sum()) >= 9  # 2 fps over 4.4 s
    assert every == skipped
    assert every_rows == skipped_rows
    assert len(every_rows) == 3


def test_damage_in_a_sampled_frame_or_its_references_is_still_found(
    settings: Settings, tmp_path: Path
) -> None:
    """Frame 35 is a P-frame that sampled frame 37 is predicted from: its clip (0-50) is dropped."""
    video = tmp_path / "cam02" / "2026-11-22" / "080000.mp4"
    render_variant(video, scene=SyntheticScene(seed=5, n_frames=75, fps=25.0), gop=25)
    corrupt_frames(video, [35])
    video_id = video_id_for(hashlib.sha256(video.read_bytes()).hexdigest())
    objects, rows = _ingest(settings, tmp_path / "skipped", video)
    every, every_rows = _ingest(settings, tmp_path / "every", video, ingest_skip_frames=False)
    assert objects == every
    assert rows == every_rows
    assert [row[0] for row in rows if row[0] == "gap"] == ["gap"]
    assert not any(key.startswith(f"clips/{video_id}-0000000/") for key in objects)


def test_frames_nothing_needs_are_never_the_sampled_ones(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    render_variant(video, scene=SyntheticScene(seed=2, n_frames=60, fps=25.0), gop=30, bframes=3)
    index = scan(video, name=str(video), fps=25.0)
    plan = plan_clips(index, clip_seconds=1.0, tolerance=0.5)
    needed = needed_frames(index, plan, sample_fps=4.0, copyable=True)
    skip = frames_to_skip(index, needed)
    assert skip is not None
    assert not np.any(skip & needed)
    # Re-encoded clips need every frame; nothing is skipped then.
    assert frames_to_skip(index, needed_frames(index, plan, sample_fps=4.0, copyable=False)) is None
