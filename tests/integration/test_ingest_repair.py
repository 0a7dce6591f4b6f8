"""A clip is registered only when whole: failed registrations, deleted frames, leftovers, repair."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from typer.testing import CliRunner

from dataengine.cli import app
from dataengine.clips import frame_key, meta_key, read_meta, video_id_for
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import RetryableLineageError
from dataengine.ingest import ingest
from dataengine.ingest.clipper import ClipWriter
from dataengine.ingest.record import LineageRecorder
from dataengine.lineage.clips import clip_events, get_clip, list_clips
from dataengine.lineage.quarantine import quarantine
from dataengine.lineage.videos import get_video
from dataengine.storage import ObjectStore
from dataengine.synthetic import write_landing


@pytest.fixture
def video(ctx: Context) -> str:
    """One 3-second synthetic video at 10 fps in the landing area: three 1-second clips."""
    return write_landing(ctx.store, n_videos=1, seed=41, seconds=3.0, fps=10.0, with_events=False)[0]


def _video_id(store: ObjectStore, key: str) -> str:
    return video_id_for(hashlib.sha256(store.read_bytes(key)).hexdigest())


def _video_signature(data: bytes) -> str:
    """A ``clip.mp4`` by what it holds: every frame's time and size, decoded.

    libx264 under PyAV is not byte-reproducible (two encodes of the same frames in one process can
    differ in a few pixel values), so a rebuilt clip is compared by its frames, not by its bytes.
    """
    with av.open(io.BytesIO(data), "r") as container:
        frames = [(frame.pts, frame.width, frame.height) for frame in container.decode(video=0)]
    return repr(frames)


def _clip_objects(store: ObjectStore) -> dict[str, str]:
    """Every object under clips/ (temporary files included) with its sha256, ``clip.mp4`` by its
    frames (:func:`_video_signature`); in ``meta.json`` the store's own URL is replaced, so that two
    stores compare equal."""
    found = store.fs.find(f"{store.root}/clips")
    objects = {}
    for path in found:
        data = store.fs.cat_file(path)
        key = str(path)[len(store.root) + 1 :]
        if key.endswith("/clip.mp4"):
            objects[key] = _video_signature(data)
        else:
            objects[key] = hashlib.sha256(data.replace(store.url.encode(), b"STORE")).hexdigest()
    return objects


def _assert_whole(store: ObjectStore, clip_id: str) -> None:
    meta = read_meta(store, clip_id)
    assert store.exists(f"clips/{clip_id}/clip.mp4")
    assert meta.sampled
    for index in meta.sampled:
        assert store.exists(frame_key(clip_id, index)), f"{clip_id} frame {index} is missing"


@pytest.fixture
def clean(settings: Settings, tmp_path: Path, video: str, ctx: Context) -> Iterator[dict[str, str]]:
    """The clip objects of one uninterrupted run of the same video in another store."""
    other = Context.create(
        settings.model_copy(
            update={
                "database_url": f"sqlite:///{tmp_path / 'clean.db'}",
                "storage_url": f"file://{tmp_path / 'clean'}",
            }
        ),
        run_id="test/clean",
    )
    other.store.write_bytes(video, ctx.store.read_bytes(video))
    ingest(other, [video], clip_seconds=1.0)
    yield _clip_objects(other.store)
    other.close()


def test_failed_registration_leaves_no_clip_without_frames(
    ctx: Context, video: str, clean: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away just as the second clip is registered; the database comes back."""
    real = LineageRecorder.clip
    calls: list[str] = []

    def cut_off(self: LineageRecorder, meta: Any, details: dict[str, Any], **kwargs: Any) -> None:
        calls.append(meta.clip_id)
        if len(calls) == 2:
            raise RetryableLineageError("lineage database is unavailable: server closed the connection")
        real(self, meta, details, **kwargs)

    monkeypatch.setattr(LineageRecorder, "clip", cut_off)
    with pytest.raises(RetryableLineageError):
        ingest(ctx, [video], clip_seconds=1.0)
    monkeypatch.undo()
    second = calls[1]
    # Whatever the failed run left is either whole or not there at all.
    if ctx.store.exists(meta_key(second)):
        _assert_whole(ctx.store, second)

    report = ingest(ctx, [video], clip_seconds=1.0)
    video_id = _video_id(ctx.store, video)
    assert sorted(report.clips + report.existing_clips) == [f"{video_id}-{s:07d}" for s in (0, 10, 20)]
    assert report.videos == [video_id]
    for clip_id in report.clips + report.existing_clips:
        _assert_whole(ctx.store, clip_id)
    assert _clip_objects(ctx.store) == clean
    assert ingest(ctx, [video], clip_seconds=1.0).skipped_videos == [video_id]


def test_killed_writes_leave_no_temporary_files_after_the_rerun(
    ctx: Context, video: str, clean: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = _video_id(ctx.store, video)
    real_finish = ClipWriter.finish
    calls: list[str] = []

    def killed(self: ClipWriter, **kwargs: Any) -> Any:
        calls.append(self.clip_id)
        if len(calls) == 2:
            # What SIGKILL leaves on disk: a JPEG that never got its final name.
            leftover = Path(ctx.store.root) / f"clips/{self.clip_id}/frames/.tmp-0123abcd-000005.jpg"
            leftover.write_bytes(b"half a jpeg")
            raise SystemExit(137)
        return real_finish(self, **kwargs)

    monkeypatch.setattr(ClipWriter, "finish", killed)
    monkeypatch.setattr(ClipWriter, "discard", lambda self: None)  # a killed process cleans nothing
    with pytest.raises(SystemExit):
        ingest(ctx, [video], clip_seconds=1.0)
    monkeypatch.undo()
    assert any(".tmp-" in key for key in _clip_objects(ctx.store))

    report = ingest(ctx, [video], clip_seconds=1.0)

    assert report.videos == [video_id]
    assert _clip_objects(ctx.store) == clean


def test_named_rerun_rebuilds_frames_deleted_by_hand(ctx: Context, video: str) -> None:
    ingest(ctx, [video], clip_seconds=1.0)
    before = _clip_objects(ctx.store)
    video_id = _video_id(ctx.store, video)
    clip_id = f"{video_id}-0000010"
    for key in ctx.store.list(f"clips/{clip_id}/frames"):
        ctx.store.delete(key)
    leftover = Path(ctx.store.root) / f"clips/{clip_id}/.tmp-0123abcd-clip.mp4"
    leftover.write_bytes(b"half a video")
    # The clip was quarantined meanwhile, the way triggers do when its frames cannot be read.
    with ctx.db.session() as session:
        quarantine(
            session,
            kind="clip",
            input=ctx.store.uri(f"clips/{clip_id}"),
            reason="frame 0 is unreadable: no such object",
            stage="triggers",
            clip_id=clip_id,
        )

    report = ingest(ctx, [video], clip_seconds=1.0)

    assert (report.repaired_videos, report.repaired_clips) == ([video_id], [clip_id])
    assert sorted(report.existing_clips) == []  # the other clips were not even looked at
    assert report.summary() == "Repaired 1 clip of 1 video (objects were missing)."
    assert _clip_objects(ctx.store) == before
    with ctx.db.session() as session:
        clip = get_clip(session, clip_id)
        assert clip.stage == "ingested"
        events = clip_events(session, clip_id)
        assert [(e.stage, e.status) for e in events] == [
            ("ingested", "ok"),
            ("quarantined", "ok"),
            ("ingested", "ok"),
        ]
        assert events[-1].details["decision"] == "repaired"
        video_row = get_video(session, video_id)
        assert video_row is not None
        assert video_row.status == "ingested"
    assert ingest(ctx, [video], clip_seconds=1.0).skipped_videos == [video_id]


def test_repair_flag_checks_every_ingested_video(ctx: Context, video: str) -> None:
    ingest(ctx, clip_seconds=1.0)
    video_id = _video_id(ctx.store, video)
    clip_id = f"{video_id}-0000020"
    ctx.store.delete(f"clips/{clip_id}/clip.mp4")
    before_events = _event_count(ctx)
    runner = CliRunner()
    env = {"DATAENGINE_DATABASE_URL": ctx.settings.database_url, "DATAENGINE_STORAGE_URL": ctx.store.url}
    # Discovery alone does not look at ingested videos again.
    plain = runner.invoke(app, ["ingest", "--clip-seconds", "1"], env=env)
    assert plain.exit_code == 0, plain.output
    assert not ctx.store.exists(f"clips/{clip_id}/clip.mp4")
    repaired = runner.invoke(app, ["ingest", "--repair", "--json"], env=env)
    assert repaired.exit_code == 0, repaired.output
    assert '"repaired_clips": [\n    "' + clip_id in repaired.output
    _assert_whole(ctx.store, clip_id)
    assert _event_count(ctx) == before_events + 1  # one "repaired" event


def _event_count(ctx: Context) -> int:
    with ctx.db.session() as session:
        clips = list_clips(session)
        return sum(len(clip_events(session, c.id)) for c in clips)
