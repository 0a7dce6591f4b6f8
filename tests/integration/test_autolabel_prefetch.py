"""Autolabel with frames decoded ahead by a thread and batched forward passes gives what the old way gave
(sequential, one frame per forward pass): same frames, boxes, tracks; errors and early stops as before."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dataengine import clips, formats
from dataengine.autolabel import autolabel
from dataengine.autolabel import pipeline as autolabel_pipeline
from dataengine.autolabel import run as autolabel_run
from dataengine.autolabel.frames import stream_frames
from dataengine.autolabel.prefetch import prefetched
from dataengine.autolabel.report import AutolabelReport
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import StorageError
from dataengine.ingest import ingest
from dataengine.lineage.clips import list_clips, register_clip, set_stage
from dataengine.lineage.model_registry import register_model, set_model_status
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.videos import register_video
from dataengine.synthetic import SyntheticScene
from dataengine.vision import build_detector, save_checkpoint
from real_video import BIKES, sample_video

VIDEO_ID = "0badc0de0badc0de"
CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 160, 120
#: Float noise of a batched forward pass against one frame at a time, in pixels: boxes are written
#: rounded to 1/100 px, so noise far below that can still flip the last digit.
BOX_TOLERANCE = 0.02
SCORE_TOLERANCE = 1e-4


def _settings(root: Path) -> Settings:
    # A threshold that lets a random detector's boxes through, so there are boxes and tracks to compare.
    return Settings(
        database_url=f"sqlite:///{root / 'lineage.db'}",
        storage_url=f"file://{root / 'store'}",
        device="cpu",
        score_threshold=0.2,
        clip_seconds=2.0,
        sample_fps=5.0,
        autolabel_models=["m-0", "m-1"],
    )


def _context(root: Path) -> Context:
    return Context.create(_settings(root), run_id="test/autolabel-prefetch")


def _add_models(ctx: Context) -> None:
    """The ensemble of the settings: two randomly initialised tiny detectors, the first promoted."""
    for seed in range(2):
        torch.manual_seed(seed)
        model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)
        model_id = f"m-{seed}"
        uri = save_checkpoint(
            ctx.store, model_id, model=model, arch="tiny_fasterrcnn", classes=CLASSES, min_size=HEIGHT,
            max_size=WIDTH,
        )  # fmt: skip
        with ctx.db.session() as session:
            register_model(
                session, model_id=model_id, checkpoint_uri=uri, dataset_id=None, parent_model_id=None
            )
            if seed == 0:
                set_model_status(session, model_id, "promoted")


def _add_synthetic_clips(ctx: Context, n_clips: int, n_frames: int) -> list[str]:
    with ctx.db.session() as session:
        register_video(
            session, video_id=VIDEO_ID, uri="file:///landing/v.mp4", sha256=VIDEO_ID * 4, status="ingested"
        )
    ids = []
    for c in range(n_clips):
        start = 100 * c
        clip_id = clips.clip_id_for(VIDEO_ID, start)
        scene = SyntheticScene(seed=c, width=WIDTH, height=HEIGHT, n_frames=n_frames, n_objects=2)
        for index, rgb, _ in scene.frames():
            ctx.store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(rgb))
        meta = clips.ClipMeta(
            clip_id=clip_id, video_id=VIDEO_ID, source_uri="file:///landing/v.mp4", start_frame=start,
            end_frame=start + n_frames, start_time=start / 10, end_time=(start + n_frames) / 10, fps=10.0,
            width=WIDTH, height=HEIGHT, sampled=list(range(n_frames)),
        )  # fmt: skip
        clips.write_meta(ctx.store, meta)
        with ctx.db.session() as session:
            register_clip(
                session, clip_id=clip_id, video_id=VIDEO_ID, start_frame=start, end_frame=meta.end_frame,
                start_time=meta.start_time, n_frames=n_frames, uri=ctx.store.uri(clips.clip_prefix(clip_id)),
            )  # fmt: skip
            set_stage(session, clip_id, "selected")
        ids.append(clip_id)
    return ids


def _copy(root: Path, to: Path) -> Context:
    """A second engine with the same database and store (the same clips and models)."""
    shutil.copytree(root, to)
    return _context(to)


def _decode_threads() -> list[threading.Thread]:
    """The threads that decode frames, or run the detectors, ahead of autolabel's own."""
    return [t for t in threading.enumerate() if t.name in ("autolabel-decode", "autolabel-forward")]


def _assert_same_labels(old: Context, new: Context, clip_ids: list[str]) -> int:
    """Every clip's autolabel is the same in both engines: frames, counts, labels, tracks and origins
    equal, boxes and scores equal within float noise. Returns the number of boxes compared."""
    n_boxes = 0
    for clip_id in clip_ids:
        a = formats.load_annotations(old.store, clip_id)
        b = formats.load_annotations(new.store, clip_id)
        assert (a.version, a.producer) == (b.version, b.producer)
        assert [f.index for f in a.frames] == [f.index for f in b.frames]
        for fa, fb in zip(a.frames, b.frames, strict=True):
            assert (fa.width, fa.height) == (fb.width, fb.height)
            assert [(x.label, x.track, x.origin) for x in fa.boxes] == [
                (x.label, x.track, x.origin) for x in fb.boxes
            ], f"{clip_id} frame {fa.index}"
            for x, y in zip(fa.boxes, fb.boxes, strict=True):
                assert x.xyxy == pytest.approx(y.xyxy, abs=BOX_TOLERANCE)
                assert x.score == pytest.approx(y.score, abs=SCORE_TOLERANCE)
            n_boxes += len(fa.boxes)
    return n_boxes


def _same_text(text: str, ctx: Context) -> str:
    """``text`` without what differs between two engines: the store's root and object addresses."""
    return re.sub(r" at 0x[0-9a-f]+", "", text.replace(f"{ctx.store.url}/", "STORE/"))


def _same_report(a: AutolabelReport, old: Context, b: AutolabelReport, new: Context) -> None:
    assert (a.clips, a.versions, a.n_boxes, a.n_tracks) == (b.clips, b.versions, b.n_boxes, b.n_tracks)
    assert {c: _same_text(r, old) for c, r in a.quarantined.items()} == {
        c: _same_text(r, new) for c, r in b.quarantined.items()
    }


@pytest.fixture
def synthetic(tmp_path: Path) -> Iterator[tuple[Context, Context, list[str]]]:
    """Two engines holding the same four 7-frame synthetic clips and two random detectors."""
    ctx = _context(tmp_path / "old")
    _add_models(ctx)
    ids = _add_synthetic_clips(ctx, n_clips=4, n_frames=7)
    other = _copy(tmp_path / "old", tmp_path / "new")
    yield ctx, other, ids
    ctx.close()
    other.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_prefetched_batches_label_a_synthetic_clip_as_one_frame_at_a_time(
    synthetic: tuple[Context, Context, list[str]], workers: int
) -> None:
    old, new, ids = synthetic
    before = autolabel(old, batch_size=1, workers=0, prefetch=0)
    # Batches of 5 cross the clips' boundaries (7 frames each); a thread, or a worker process, decodes.
    after = autolabel(new, batch_size=5, workers=workers, prefetch=2)
    _same_report(before, old, after, new)
    assert before.clips == ids
    assert _assert_same_labels(old, new, ids) > 0
    assert before.n_tracks > 0
    assert _decode_threads() == []


def test_prefetched_batches_label_a_real_video_as_one_frame_at_a_time(tmp_path: Path) -> None:
    old = _context(tmp_path / "old")
    _add_models(old)
    ingest(old, [str(sample_video(BIKES))])
    with old.db.session() as session:
        ids = [clip.id for clip in list_clips(session)]
        for clip_id in ids:
            set_stage(session, clip_id, "selected")
    new = _copy(tmp_path / "old", tmp_path / "new")
    try:
        before = autolabel(old, batch_size=1, workers=0, prefetch=0)
        after = autolabel(new, batch_size=8, workers=0, prefetch=2)
        _same_report(before, old, after, new)
        assert len(ids) == 5  # 10 s in clips of 2 s
        assert sorted(before.clips) == sorted(ids)
        assert _assert_same_labels(old, new, ids) > 0
        assert _decode_threads() == []
    finally:
        old.close()
        new.close()


def test_a_corrupt_frame_quarantines_its_clip_as_before(
    synthetic: tuple[Context, Context, list[str]],
) -> None:
    old, new, ids = synthetic
    for ctx in (old, new):
        ctx.store.write_bytes(clips.frame_key(ids[1], 4), b"not a jpeg")
    before = autolabel(old, batch_size=1, workers=0, prefetch=0)
    after = autolabel(new, batch_size=5, workers=0, prefetch=2)
    _same_report(before, old, after, new)
    assert list(after.quarantined) == [ids[1]]
    assert "frame 4 is unreadable" in after.quarantined[ids[1]]
    rows = []
    for ctx in (old, new):
        with ctx.db.session() as session:
            rows.append(
                [
                    (q.clip_id, q.stage, _same_text(q.input, ctx), _same_text(q.reason, ctx))
                    for q in list_quarantine(session)
                ]
            )
    assert rows[0] == rows[1]
    assert rows[1][0][2] == "STORE/" + clips.frame_key(ids[1], 4)
    assert _assert_same_labels(old, new, [ids[0], ids[2], ids[3]]) > 0


def test_an_error_in_the_decoding_thread_is_raised_by_autolabel(
    synthetic: tuple[Context, Context, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ctx, ids = synthetic
    real = clips.read_frame

    def fail_on_the_third_clip(store: Any, clip_id: str, index: int) -> Any:
        if clip_id == ids[2] and index == 3:
            raise MemoryError("decoder ran out of memory")
        return real(store, clip_id, index)

    monkeypatch.setattr(clips, "read_frame", fail_on_the_third_clip)
    with pytest.raises(MemoryError, match="decoder ran out of memory"):
        autolabel(ctx, batch_size=2, workers=0, prefetch=2)
    assert _decode_threads() == []
    with ctx.db.session() as session:
        stage = {clip.id: clip.stage for clip in list_clips(session)}
    # The clips whose frames all came before the error were labelled and committed.
    assert [stage[c] for c in ids] == ["autolabelled", "autolabelled", "selected", "selected"]


def test_a_failure_in_the_consumer_stops_and_joins_the_decoding_thread(
    synthetic: tuple[Context, Context, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ctx, ids = synthetic
    real = autolabel_pipeline.label_clip

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("worker killed while labelling")

    monkeypatch.setattr(autolabel_run, "label_clip", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        autolabel(ctx, batch_size=2, workers=0, prefetch=2)
    assert _decode_threads() == []
    monkeypatch.setattr(autolabel_run, "label_clip", real)
    assert autolabel(ctx).clips == ids  # rerunnable


def test_prefetch_keeps_order_and_stays_bounded() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetched(source(), 3):
        time.sleep(0.001)
        # At most 3 in the queue and one being produced ahead of what the consumer holds.
        assert len(produced) <= item + 1 + 3 + 1
        seen.append(item)
    assert seen == list(range(50))


def test_prefetch_raises_the_sources_error_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise StorageError("s3://bucket/clips/x/frames/000003.jpg: connection reset")

    stream = prefetched(source(), 1, name="autolabel-decode")
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(StorageError, match=r"000003\.jpg: connection reset"):
        next(stream)
    assert _decode_threads() == []


def test_closing_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = prefetched(endless(), 2, name="autolabel-decode")
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    assert len(_decode_threads()) == 1
    stream.close()
    assert _decode_threads() == []
    assert closed.is_set()


def test_stream_frames_closed_early_leaves_no_thread(synthetic: tuple[Context, Context, list[str]]) -> None:
    ctx, _, ids = synthetic
    batches = stream_frames(ctx.store, ids, batch_size=2, workers=0, prefetch=1)
    first = next(batches)
    assert [(i.clip_id, i.position) for i in first] == [(ids[0], 0), (ids[0], 1)]
    batches.close()
    assert _decode_threads() == []
