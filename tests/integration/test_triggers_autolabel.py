"""Triggers and autolabel on real clips in a store and SQLite, with a tiny random (untrained) detector."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from dataengine import clips, formats
from dataengine.autolabel import AutolabelReport, autolabel
from dataengine.autolabel import run as autolabel_run
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import ModelError, NotFoundError
from dataengine.lineage.annotations import annotation_versions, latest_annotation, record_annotation
from dataengine.lineage.clips import clip_events, list_clips, register_clip, set_stage
from dataengine.lineage.model_registry import register_model, set_model_status
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.triggers import record_trigger_score, trigger_scores
from dataengine.lineage.videos import register_video
from dataengine.triggers import NO_MODEL_MESSAGE, run_triggers
from dataengine.vision import Detections, Detector, build_detector, save_checkpoint

VIDEO_ID = "0123456789abcdef"
SAMPLED = [0, 5, 10, 15]
HEIGHT, WIDTH = 48, 64
CLASSES = ["person", "bed", "wheelchair"]


def make_engine(settings: Settings, **overrides: Any) -> Context:
    """A Context whose score threshold lets a random detector's boxes (scores ~0.26) through; it runs the
    triggers these tests were written for (tests/integration/test_triggers_pipeline.py runs them all)."""
    triggers = ["flicker", "temporal", "disagreement", "brightness"]
    update = {"score_threshold": 0.2, "device": "cpu", "triggers": triggers, **overrides}
    context = Context.create(settings.model_copy(update=update), run_id="test/run")
    with context.db.session() as session:
        register_video(
            session, video_id=VIDEO_ID, uri="file:///landing/v.mp4", sha256=VIDEO_ID * 4, status="ingested"
        )
    return context


@pytest.fixture
def engine(settings: Settings) -> Iterator[Context]:
    """An engine on SQLite and a local folder."""
    context = make_engine(settings)
    yield context
    context.close()


def frame(level: int) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), level, dtype=np.uint8)
    image[10:40, 8:30] = 255 - level  # something for the detector to look at
    return image


def add_clip(ctx: Context, start_frame: int, levels: Sequence[int]) -> str:
    """Write a clip's frames and meta.json and register it in stage ingested."""
    clip_id = clips.clip_id_for(VIDEO_ID, start_frame)
    sampled = SAMPLED[: len(levels)]
    for index, level in zip(sampled, levels, strict=True):
        ctx.store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(frame(level)))
    meta = clips.ClipMeta(
        clip_id=clip_id,
        video_id=VIDEO_ID,
        source_uri="file:///landing/v.mp4",
        start_frame=start_frame,
        end_frame=start_frame + 20,
        start_time=start_frame / 10,
        end_time=(start_frame + 20) / 10,
        fps=10.0,
        width=WIDTH,
        height=HEIGHT,
        sampled=list(sampled),
    )
    clips.write_meta(ctx.store, meta)
    with ctx.db.session() as session:
        register_clip(
            session,
            clip_id=clip_id,
            video_id=VIDEO_ID,
            start_frame=start_frame,
            end_frame=start_frame + 20,
            start_time=start_frame / 10,
            n_frames=20,
            uri=ctx.store.uri(clips.clip_prefix(clip_id)),
            run_id="test/ingest",
        )
    return clip_id


def add_model(
    ctx: Context, model_id: str, *, seed: int, parent: str | None = None, promote: bool = True
) -> None:
    """Save a randomly initialised tiny detector and register (and promote) it."""
    torch.manual_seed(seed)
    model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=64, max_size=96)
    uri = save_checkpoint(
        ctx.store, model_id, model=model, arch="tiny_fasterrcnn", classes=CLASSES, min_size=64, max_size=96
    )
    with ctx.db.session() as session:
        register_model(
            session, model_id=model_id, checkpoint_uri=uri, dataset_id=None, parent_model_id=parent
        )
        if promote:
            set_model_status(session, model_id, "promoted")


def stages(ctx: Context) -> dict[str, str]:
    with ctx.db.session() as session:
        return {clip.id: clip.stage for clip in list_clips(session)}


def lineage_counts(ctx: Context) -> dict[str, int]:
    """Rows per table that a rerun must not grow."""
    with ctx.db.session() as session:
        ids = [clip.id for clip in list_clips(session)]
        return {
            "events": sum(len(clip_events(session, i)) for i in ids),
            "scores": sum(len(trigger_scores(session, i)) for i in ids),
            "annotations": sum(len(annotation_versions(session, i)) for i in ids),
            "quarantine": len(list_quarantine(session)),
        }


@pytest.fixture
def predict_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records (model_id, n_frames) of every Detector.predict call; detections are the real ones."""
    calls: list[tuple[str, int]] = []
    real = Detector.predict

    def counting(self: Detector, frames: Sequence[np.ndarray], **kwargs: Any) -> list[Detections]:
        calls.append((self.model_id, len(frames)))
        return real(self, frames, **kwargs)

    monkeypatch.setattr(Detector, "predict", counting)
    return calls


# Triggers ---------------------------------------------------------------------------------------


def test_without_a_model_only_image_triggers_run_and_the_brightest_jump_is_selected(
    engine: Context, caplog: pytest.LogCaptureFixture
) -> None:
    steady = add_clip(engine, 0, [100, 100, 101, 100])
    jump = add_clip(engine, 20, [40, 40, 200, 200])
    small = add_clip(engine, 40, [100, 116, 116, 116])
    with caplog.at_level(logging.WARNING, logger="dataengine.triggers"):
        report = run_triggers(engine, budget_count=1)

    assert report.model_id is None
    assert report.skipped_triggers == {
        "flicker": NO_MODEL_MESSAGE,
        "temporal": NO_MODEL_MESSAGE,
        "disagreement": NO_MODEL_MESSAGE,
    }
    assert "trigger flicker skipped: no promoted model yet" in caplog.text
    assert report.scored == [steady, jump, small]
    assert report.selected == [jump]
    assert report.rejected == [small, steady]
    assert report.budget == 1
    assert set(report.scores[jump]) == {"brightness"}
    assert report.scores[jump]["brightness"] == 1.0
    assert report.scores[steady]["brightness"] < 0.05
    assert 0.1 < report.scores[small]["brightness"] < 0.5
    assert stages(engine) == {steady: "rejected", jump: "selected", small: "rejected"}
    assert "skipped trigger flicker" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["selected"] == [jump]
    with engine.db.session() as session:
        (row,) = trigger_scores(session, jump)
        assert (row.trigger, row.model_id, row.frames, row.run_id) == (
            "brightness",
            None,
            [10],
            "test/run",
        )
        events = clip_events(session, jump)
        assert [e.stage for e in events] == ["ingested", "scored", "selected"]
        assert events[-1].details["trigger"] == "brightness"
        assert events[-1].details["score"] == 1.0
        assert events[-1].run_id == "test/run"
        rejected = clip_events(session, small)[-1]
        assert rejected.details["trigger"] == "brightness"
        assert rejected.details["score"] == pytest.approx(report.scores[small]["brightness"], abs=1e-6)
        assert rejected.details["reason"] == "ranked 2, below the budget of 1"


def test_budget_fraction_rounds_down_and_settings_give_the_default(engine: Context) -> None:
    ids = [add_clip(engine, 20 * i, [60, 60 + 10 * i, 60, 60]) for i in range(5)]
    report = run_triggers(engine, budget_fraction=0.5)  # floor(2.5) = 2
    assert report.selected == [ids[4], ids[3]]
    assert len(report.rejected) == 3
    more = [add_clip(engine, 200 + 20 * i, [90, 90, 90, 90]) for i in range(3)]
    engine.settings.budget_fraction = 0.5
    report = run_triggers(engine)
    assert report.scored == more
    assert report.budget == 1  # floor(0.5 * 3); nothing fires, so no minimum of one applies
    assert report.selected == more[:1]  # all tie at 0: the lowest id wins


def test_model_triggers_share_one_detector_pass_per_clip(
    engine: Context, predict_calls: list[tuple[str, int]]
) -> None:
    a, b = add_clip(engine, 0, [90, 90, 90, 90]), add_clip(engine, 20, [90, 30, 90, 30])
    add_model(engine, "m-1", seed=1)
    report = run_triggers(engine, budget_count=1)

    assert report.model_id == "m-1"
    assert list(report.skipped_triggers) == ["disagreement"]
    assert "m-1 has no previous model" in report.skipped_triggers["disagreement"]
    assert predict_calls == [("m-1", 8)]  # one batched pass over both clips' frames
    assert set(report.scores[a]) == {"flicker", "temporal", "brightness"}
    assert all(0.0 <= s <= 1.0 for scores in report.scores.values() for s in scores.values())
    assert report.selected == [b]
    with engine.db.session() as session:
        rows = {row.trigger: row for row in trigger_scores(session, a)}
        assert rows["flicker"].model_id == "m-1"
        assert rows["flicker"].details["detections_per_frame"] == [10, 10, 10, 10]  # the strongest 10 of 50
        assert rows["brightness"].model_id is None


def test_flicker_selects_the_clip_where_a_monkeypatched_detector_blinks(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detector.predict is replaced by a fake that sees a person only on frames brighter than 102."""

    def blinking(self: Detector, frames: Sequence[np.ndarray], **kwargs: Any) -> list[Detections]:
        person = Detections(
            np.array([[8, 10, 30, 40]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64)
        )
        return [person if int(f[0, 0, 0]) > 102 else Detections.empty() for f in frames]

    monkeypatch.setattr(Detector, "predict", blinking)
    steady = add_clip(engine, 0, [104, 104, 104, 104])
    blinks = add_clip(engine, 20, [104, 100, 104, 100])
    add_model(engine, "m-1", seed=1)

    report = run_triggers(engine, budget_count=1)

    assert report.scores[steady]["flicker"] == 0.0
    assert report.scores[blinks]["flicker"] == 1.0
    assert report.scores[blinks]["brightness"] < 0.1
    assert report.selected == [blinks]
    with engine.db.session() as session:
        event = clip_events(session, blinks)[-1]
        assert (event.stage, event.details["trigger"], event.details["score"]) == ("selected", "flicker", 1.0)
        row = next(r for r in trigger_scores(session, blinks) if r.trigger == "flicker")
        assert row.frames == [5]  # gone at 5, back at 10; gone again at the clip's end
        assert row.details["vanish_and_return"] == 1


def test_disagreement_compares_with_the_previously_promoted_model(
    engine: Context, predict_calls: list[tuple[str, int]]
) -> None:
    clip_id = add_clip(engine, 0, [90, 90, 90, 90])
    add_model(engine, "m-1", seed=3)
    add_model(engine, "m-2", seed=3, parent="m-1")  # the same weights: the models agree
    report = run_triggers(engine, budget_count=0)

    assert report.skipped_triggers == {}
    assert report.model_id == "m-2"
    assert report.scores[clip_id]["disagreement"] == 0.0
    assert sorted(predict_calls) == [("m-1", 4), ("m-2", 4)]
    assert report.rejected == [clip_id]
    with engine.db.session() as session:
        row = next(r for r in trigger_scores(session, clip_id) if r.trigger == "disagreement")
        assert row.details["reference_model_id"] == "m-1"
        assert row.details["max_frame_disagreement"] == 0.0


def test_disagreement_is_skipped_when_the_parent_model_has_no_checkpoint(engine: Context) -> None:
    add_clip(engine, 0, [90, 90, 90, 90])
    add_model(engine, "m-2", seed=1, parent="m-gone")
    report = run_triggers(engine, budget_count=1)
    assert "m-gone" in report.skipped_triggers["disagreement"]
    with engine.db.session() as session:
        register_model(
            session,
            model_id="m-1",
            checkpoint_uri="file:///nowhere/model.pt",
            dataset_id=None,
            parent_model_id=None,
        )
        register_model(session, model_id="m-3", checkpoint_uri="x", dataset_id=None, parent_model_id="m-1")
    add_model(engine, "m-3", seed=2, parent="m-1")
    add_clip(engine, 20, [90, 90, 90, 90])
    report = run_triggers(engine, budget_count=1)
    assert "m-1 has no usable checkpoint" in report.skipped_triggers["disagreement"]
    assert report.model_id == "m-3"


def test_rerun_touches_nothing(engine: Context) -> None:
    add_clip(engine, 0, [90, 90, 90, 90])
    add_clip(engine, 20, [90, 10, 90, 10])
    add_model(engine, "m-1", seed=1)
    first = run_triggers(engine, budget_count=1)
    before, before_stages = lineage_counts(engine), stages(engine)
    second = run_triggers(engine, budget_count=1)
    assert len(first.scored) == 2
    assert (second.scored, second.selected, second.rejected) == ([], [], [])
    assert lineage_counts(engine) == before
    assert stages(engine) == before_stages


def test_named_clips_only_and_unknown_names(engine: Context) -> None:
    a, b = add_clip(engine, 0, [90, 90, 90, 90]), add_clip(engine, 20, [90, 90, 90, 90])
    report = run_triggers(engine, budget_count=5, clip_ids=[b])
    assert report.scored == [b]
    assert report.selected == [b]
    assert stages(engine) == {a: "ingested", b: "selected"}
    assert run_triggers(engine, budget_count=5, clip_ids=[b]).scored == []
    with pytest.raises(NotFoundError, match="no clip"):
        run_triggers(engine, budget_count=1, clip_ids=[a, "0123456789abcdef-9999999"])


def test_a_clip_left_in_scored_by_an_interrupted_run_is_selected_next_time(engine: Context) -> None:
    stranded = add_clip(engine, 0, [20, 200, 20, 200])
    with engine.db.session() as session:
        record_trigger_score(session, clip_id=stranded, trigger="brightness", score=0.9)
        set_stage(session, stranded, "scored")
    fresh = add_clip(engine, 20, [90, 90, 90, 90])
    report = run_triggers(engine, budget_count=1)
    assert report.scored == [fresh]
    assert report.selected == [stranded]
    assert report.rejected == [fresh]


def test_unreadable_clips_are_quarantined_and_the_batch_goes_on(engine: Context) -> None:
    good = add_clip(engine, 0, [90, 90, 90, 90])
    corrupt = add_clip(engine, 20, [90, 90, 90, 90])
    engine.store.write_bytes(clips.frame_key(corrupt, 10), b"\xff\xd8 this is not a jpeg")
    no_meta = add_clip(engine, 40, [90, 90, 90, 90])
    engine.store.delete(clips.meta_key(no_meta))
    no_frames = add_clip(engine, 60, [])
    add_model(engine, "m-1", seed=1)

    report = run_triggers(engine, budget_count=5)

    assert report.scored == [good]
    assert report.selected == [good]
    assert set(report.quarantined) == {corrupt, no_meta, no_frames}
    assert "frames/000010.jpg: not a readable image" in report.quarantined[corrupt]
    assert "meta.json" in report.quarantined[no_meta]
    assert "no such object" in report.quarantined[no_meta]
    assert "lists no sampled frames" in report.quarantined[no_frames]
    assert stages(engine) == {
        good: "selected",
        corrupt: "quarantined",
        no_meta: "quarantined",
        no_frames: "quarantined",
    }
    with engine.db.session() as session:
        items = {item.clip_id: item for item in list_quarantine(session)}
        assert items[corrupt].input == engine.store.uri(clips.frame_key(corrupt, 10))
        assert items[corrupt].kind == "clip"
        assert items[corrupt].stage == "triggers"
        assert items[no_meta].input == engine.store.uri(clips.meta_key(no_meta))
    before = lineage_counts(engine)
    run_triggers(engine, budget_count=5)
    assert lineage_counts(engine) == before


def test_the_loop_through_autolabel_on_each_database(settings: Settings, database_url: str) -> None:
    """The JSON columns (JSONB on PostgreSQL) and upserts hold the same on both backends."""
    ctx = make_engine(settings, database_url=database_url)
    try:
        clip_ids = [add_clip(ctx, 0, [90, 90, 90, 90]), add_clip(ctx, 20, [20, 220, 20, 220])]
        add_model(ctx, "m-1", seed=1)
        report = run_triggers(ctx, budget_count=1)
        assert report.selected == [clip_ids[1]]
        assert run_triggers(ctx, budget_count=1).scored == []
        labelled = autolabel(ctx)
        assert labelled.versions == {clip_ids[1]: 1}
        assert autolabel(ctx, clip_ids=[clip_ids[1]]).skipped == [clip_ids[1]]
        with ctx.db.session() as session:
            rows = {row.trigger: row for row in trigger_scores(session, clip_ids[1])}
            assert rows["brightness"].frames == [5, 10, 15]
            assert rows["flicker"].details["detections_per_frame"] == [10, 10, 10, 10]  # strongest 10
            latest = latest_annotation(session, clip_ids[1])
            assert latest is not None
            assert (latest.version, latest.producer["models"]) == (1, ["m-1"])
    finally:
        ctx.close()


# Autolabel --------------------------------------------------------------------------------------


def select_all(ctx: Context, n_clips: int = 1) -> list[str]:
    """Add ``n_clips`` clips and select every one of them."""
    for i in range(n_clips):
        add_clip(ctx, 20 * i, [90, 90 - 20 * i, 90, 90])
    selected = run_triggers(ctx, budget_fraction=1.0).selected
    assert len(selected) == n_clips
    return sorted(selected)


def test_autolabel_without_a_promoted_model_is_a_model_error(engine: Context) -> None:
    add_clip(engine, 0, [90, 90, 90, 90])
    with pytest.raises(ModelError, match="no promoted model yet: import one you have"):
        autolabel(engine)


def test_autolabel_writes_a_valid_tracked_version_and_registers_it(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    selected = select_all(engine, 2)
    extra = add_clip(engine, 200, [90, 90, 90, 90])  # still ingested: not labelled

    report = autolabel(engine, batch_size=3)

    assert isinstance(report, AutolabelReport)
    assert report.clips == selected
    assert report.versions == {clip_id: 1 for clip_id in selected}
    assert report.model_id == "m-1"
    assert report.skipped == []
    assert report.summary().startswith(f"autolabelled 2 clip(s) with model m-1: {report.n_boxes} box(es)")
    assert json.loads(json.dumps(report.to_dict()))["versions"] == report.versions
    clip_id = selected[0]
    labels = formats.load_annotations(engine.store, clip_id)
    assert (labels.version, labels.parent_version, labels.source) == (1, None, "autolabel")
    assert labels.producer["models"] == ["m-1"]
    assert labels.classes == CLASSES
    assert [f.index for f in labels.frames] == SAMPLED
    first = labels.frames[0]
    assert (first.width, first.height, first.image) == (WIDTH, HEIGHT, "frames/000000.jpg")
    boxes = [box for f in labels.frames for box in f.boxes]
    assert report.n_boxes == sum(formats.load_annotations(engine.store, c).n_boxes for c in selected)
    assert labels.n_boxes == len(boxes)
    assert boxes
    assert all(box.origin == "detector" and box.score is not None and box.score >= 0.2 for box in boxes)
    assert all(
        0 <= box.xyxy[0] < box.xyxy[2] <= WIDTH and 0 <= box.xyxy[1] < box.xyxy[3] <= HEIGHT for box in boxes
    )
    assert min(box.track or 0 for box in boxes) == 1
    assert stages(engine)[extra] == "ingested"
    with engine.db.session() as session:
        (row,) = annotation_versions(session, clip_id)
        assert (row.version, row.source, row.parent_version, row.n_boxes, row.n_frames) == (
            1,
            "autolabel",
            None,
            labels.n_boxes,
            4,
        )
        assert row.producer == labels.producer
        assert row.sha256 == formats.sha256_hex(engine.store.read_bytes(formats.annotation_key(clip_id, 1)))
        event = clip_events(session, clip_id)[-1]
        assert event.stage == "autolabelled"
        assert event.details["model_id"] == "m-1"
        assert event.details["version"] == 1
        assert event.details["n_boxes"] == labels.n_boxes
        assert event.details["n_tracks"] == len({box.track for box in boxes})


def test_autolabel_rerun_and_named_rerun_create_nothing(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    selected = select_all(engine)
    autolabel(engine)
    before = lineage_counts(engine)
    files = engine.store.list("annotations/")

    again = autolabel(engine)
    named = autolabel(engine, clip_ids=selected)

    assert again.clips == []
    assert again.skipped == []
    assert named.clips == []
    assert named.skipped == selected
    assert "already an autolabel by m-1" in named.skip_reasons[selected[0]]
    assert lineage_counts(engine) == before
    assert engine.store.list("annotations/") == files


def test_a_new_model_labels_on_top_of_a_review(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    (clip_id,) = select_all(engine)
    autolabel(engine)
    review = formats.load_annotations(engine.store, clip_id, 1)
    review.version, review.parent_version, review.source = 2, 1, "review"
    review.frames = [
        formats.Frame(index=f.index, image=f.image, width=f.width, height=f.height) for f in review.frames
    ]
    saved = formats.save_annotations(engine.store, review)
    with engine.db.session() as session:
        record_annotation(
            session,
            clip_id=clip_id,
            version=2,
            uri=saved.uri,
            sha256=saved.sha256,
            source="review",
            parent_version=1,
            producer={},
            n_frames=saved.n_frames,
            n_boxes=0,
        )
        set_stage(session, clip_id, "reviewed")
    add_model(engine, "m-2", seed=2, parent="m-1")

    report = autolabel(engine, clip_ids=[clip_id])

    assert report.versions == {clip_id: 3}
    labels = formats.load_annotations(engine.store, clip_id)
    assert (labels.version, labels.parent_version, labels.producer["models"]) == (3, 2, ["m-2"])
    assert stages(engine)[clip_id] == "autolabelled"


def test_named_clips_in_an_early_stage_are_skipped_with_the_reason(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    clip_id = add_clip(engine, 0, [90, 90, 90, 90])
    report = autolabel(engine, clip_ids=[clip_id])
    assert report.clips == []
    assert report.skipped == [clip_id]
    assert "stage 'ingested'" in report.skip_reasons[clip_id]
    assert stages(engine)[clip_id] == "ingested"
    with pytest.raises(NotFoundError):
        autolabel(engine, clip_ids=["0123456789abcdef-7654321"])


def test_frames_without_detections_are_listed_as_negatives(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    (clip_id,) = select_all(engine)
    engine.settings.score_threshold = 0.99
    report = autolabel(engine)
    labels = formats.load_annotations(engine.store, clip_id)
    assert report.n_boxes == 0
    assert [f.index for f in labels.frames] == SAMPLED
    assert all(f.boxes == [] for f in labels.frames)
    assert report.n_tracks == 0


def test_autolabel_quarantines_a_clip_with_a_corrupt_frame_and_labels_the_others(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    good = add_clip(engine, 0, [90, 90, 90, 90])
    bad = add_clip(engine, 20, [90, 90, 90, 90])
    assert sorted(run_triggers(engine, budget_fraction=1.0).selected) == [good, bad]
    engine.store.write_bytes(clips.frame_key(bad, 15), b"garbage")

    report = autolabel(engine)

    assert report.clips == [good]
    assert list(report.quarantined) == [bad]
    assert "frames/000015.jpg" in report.quarantined[bad]
    assert stages(engine) == {good: "autolabelled", bad: "quarantined"}
    assert formats.list_versions(engine.store, bad) == []
    with engine.db.session() as session:
        (item,) = list_quarantine(session)
        assert (item.clip_id, item.stage) == (bad, "autolabel")


def test_a_version_written_but_not_registered_is_adopted_on_rerun(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(engine, "m-1", seed=1)
    (clip_id,) = select_all(engine)

    def crash(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("worker killed between the file write and the database commit")

    with monkeypatch.context() as patch:
        patch.setattr(autolabel_run, "_commit", crash)
        with pytest.raises(RuntimeError):
            autolabel(engine)
    assert formats.list_versions(engine.store, clip_id) == [1]
    assert stages(engine)[clip_id] == "selected"

    report = autolabel(engine)

    assert report.versions == {clip_id: 1}
    assert formats.list_versions(engine.store, clip_id) == [1]
    assert stages(engine)[clip_id] == "autolabelled"
    with engine.db.session() as session:
        (row,) = annotation_versions(session, clip_id)
        assert row.sha256 == formats.sha256_hex(engine.store.read_bytes(formats.annotation_key(clip_id, 1)))
