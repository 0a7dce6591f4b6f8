"""Autolabel on real clips in a store and SQLite: ensembles, streaming workers, resume, and ground truth."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch

from dataengine import clips, formats
from dataengine.autolabel import autolabel
from dataengine.autolabel import pipeline as autolabel_pipeline
from dataengine.autolabel import run as autolabel_run
from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import ConfigError, ModelError
from dataengine.formats import Box
from dataengine.lineage.annotations import annotation_versions, latest_annotation
from dataengine.lineage.clips import list_clips, register_clip, set_stage
from dataengine.lineage.model_registry import register_model, set_model_status
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.videos import register_video
from dataengine.synthetic import SyntheticScene
from dataengine.vision import Detections, Detector, build_detector, save_checkpoint
from dataengine.vision.boxes import pairwise_iou
from dataengine.vision.detection_cache import save_detections
from dataengine.vision.mmdet_backend import (
    build_mmdet_model,
    mmdet_available,
    save_mmdet_checkpoint,
    tiny_mmdet_config,
)
from progress_log import ProgressLog

VIDEO_ID = "fedcba9876543210"
CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 160, 120


@pytest.fixture
def engine(settings: Settings) -> Iterator[Context]:
    """An engine on SQLite and a local folder; the threshold lets a random detector's boxes through."""
    context = Context.create(
        settings.model_copy(update={"score_threshold": 0.2, "device": "cpu", "autolabel_workers": 0}),
        run_id="test/autolabel",
    )
    with context.db.session() as session:
        register_video(
            session, video_id=VIDEO_ID, uri="file:///landing/v.mp4", sha256=VIDEO_ID * 4, status="ingested"
        )
    yield context
    context.close()


def add_clip(
    ctx: Context, start_frame: int, *, seed: int, n_frames: int = 6, step: int = 1
) -> list[list[Box]]:
    """Render a synthetic clip, write its frames and meta.json, move it to ``selected``; returns its truth."""
    clip_id = clips.clip_id_for(VIDEO_ID, start_frame)
    scene = SyntheticScene(seed=seed, width=WIDTH, height=HEIGHT, n_frames=n_frames * step, n_objects=2)
    truth, sampled = [], []
    for index, rgb, boxes in scene.frames():
        if index % step == 0:
            ctx.store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(rgb))
            truth.append(boxes)
            sampled.append(index)
    meta = clips.ClipMeta(
        clip_id=clip_id,
        video_id=VIDEO_ID,
        source_uri="file:///landing/v.mp4",
        start_frame=start_frame,
        end_frame=start_frame + n_frames * step,
        start_time=start_frame / 10,
        end_time=(start_frame + n_frames * step) / 10,
        fps=10.0,
        width=WIDTH,
        height=HEIGHT,
        sampled=sampled,
    )
    clips.write_meta(ctx.store, meta)
    with ctx.db.session() as session:
        register_clip(
            session,
            clip_id=clip_id,
            video_id=VIDEO_ID,
            start_frame=start_frame,
            end_frame=meta.end_frame,
            start_time=meta.start_time,
            n_frames=meta.n_frames,
            uri=ctx.store.uri(clips.clip_prefix(clip_id)),
        )
        set_stage(session, clip_id, "selected")
    return truth


def clip_id(start_frame: int) -> str:
    return clips.clip_id_for(VIDEO_ID, start_frame)


def add_model(ctx: Context, model_id: str, *, seed: int, model: torch.nn.Module | None = None) -> None:
    """Save a (by default randomly initialised) tiny detector, register and promote it."""
    torch.manual_seed(seed)
    if model is None:
        model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)
    uri = save_checkpoint(
        ctx.store,
        model_id,
        model=model,
        arch="tiny_fasterrcnn",
        classes=CLASSES,
        min_size=HEIGHT,
        max_size=WIDTH,
    )
    with ctx.db.session() as session:
        register_model(session, model_id=model_id, checkpoint_uri=uri, dataset_id=None, parent_model_id=None)
        set_model_status(session, model_id, "promoted")


def stages(ctx: Context) -> dict[str, str]:
    with ctx.db.session() as session:
        return {clip.id: clip.stage for clip in list_clips(session)}


def n_versions(ctx: Context, clip: str) -> int:
    with ctx.db.session() as session:
        return len(annotation_versions(session, clip))


def test_resume_after_a_crash_mid_batch_skips_the_clips_already_done(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(engine, "m-1", seed=1)
    for i in range(3):
        add_clip(engine, 100 * i, seed=i)
    real = autolabel_pipeline.label_clip
    calls: list[int] = []

    def crash_on_the_second_clip(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed while labelling")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(autolabel_run, "label_clip", crash_on_the_second_clip)
        with pytest.raises(RuntimeError, match="worker killed"):
            autolabel(engine, batch_size=4)
    assert stages(engine) == {clip_id(0): "autolabelled", clip_id(100): "selected", clip_id(200): "selected"}

    report = autolabel(engine, batch_size=4)

    assert report.clips == [clip_id(100), clip_id(200)]
    assert report.versions == {clip_id(100): 1, clip_id(200): 1}
    assert set(stages(engine).values()) == {"autolabelled"}
    assert [n_versions(engine, c) for c in (clip_id(0), clip_id(100), clip_id(200))] == [1, 1, 1]
    # Named again, the finished clip is skipped: same models, same parameters.
    again = autolabel(engine, clip_ids=[clip_id(0)])
    assert (again.clips, again.skipped) == ([], [clip_id(0)])


def test_an_ensemble_writes_fused_boxes_and_its_producer(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    add_model(engine, "m-2", seed=2)
    add_clip(engine, 0, seed=3, n_frames=5, step=2)
    engine.settings.autolabel_models = ["m-1", "m-2"]
    engine.settings.autolabel_model_weights = [2.0, 1.0]
    engine.settings.autolabel_min_track_frames = 1

    report = autolabel(engine)

    assert (report.model_id, report.model_ids) == ("m-1+m-2", ["m-1", "m-2"])
    labels = formats.load_annotations(engine.store, clip_id(0))
    assert labels.producer["models"] == ["m-1", "m-2"]
    assert labels.producer["pipeline"] == "wbf+bytetrack+hindsight/2"
    params = labels.producer["params"]
    assert (params["weights"], params["gap_frames"], params["min_track_frames"]) == ([2.0, 1.0], 4, 1)
    assert [f.index for f in labels.frames] == [0, 2, 4, 6, 8]
    boxes = [b for f in labels.frames for b in f.boxes]
    assert boxes
    assert {b.origin for b in boxes} <= {"ensemble", "interpolated"}
    assert all(b.score is not None and b.score >= 0.2 for b in boxes)
    with engine.db.session() as session:
        row = latest_annotation(session, clip_id(0))
        assert row is not None
        assert row.producer == labels.producer

    # Other parameters are another labelling: a named rerun writes version 2 on top of version 1.
    engine.settings.autolabel_smoothing = 0.0
    rerun = autolabel(engine, clip_ids=[clip_id(0)])
    assert rerun.versions == {clip_id(0): 2}
    assert formats.load_annotations(engine.store, clip_id(0)).parent_version == 1


def test_a_member_far_below_the_best_on_held_out_is_dropped_and_the_rest_weighted_per_class(
    engine: Context,
) -> None:
    """Weights and drops come from the members' held-out evaluations in lineage, as promotion stores them."""
    scores = {
        "m-1": (0.9, {"person": 0.9, "bed": 0.5, "wheelchair": None}),
        "m-2": (0.85, {"person": 0.45, "bed": 0.8, "wheelchair": None}),
        "m-3": (0.5, {"person": 0.5, "bed": 0.5, "wheelchair": None}),
    }
    for seed, (model_id, (map50, per_class)) in enumerate(scores.items(), start=1):
        add_model(engine, model_id, seed=seed)
        evaluation = {
            "map50": map50,
            "per_class": {
                name: {"ap": ap, "ap50": ap, "support": 0 if ap is None else 9}
                for name, ap in per_class.items()
            },
        }
        with engine.db.session() as session:
            set_model_status(
                session, model_id, "rejected", metrics={"eval": evaluation, "held_out": "heldout@1"}
            )
    add_clip(engine, 0, seed=3, n_frames=4)
    engine.settings.autolabel_models = ["m-1", "m-2", "m-3"]

    report = autolabel(engine)

    assert report.model_ids == ["m-1", "m-2"]
    assert list(report.dropped_models) == ["m-3"]
    assert "0.500 is more than 0.10 below the best, 0.900" in report.dropped_models["m-3"]
    assert "left model m-3 out of the ensemble" in report.summary()
    labels = formats.load_annotations(engine.store, clip_id(0))
    assert labels.producer["models"] == ["m-1", "m-2"]
    assert labels.producer["ensemble"]["dropped"] == report.dropped_models
    assert labels.producer["ensemble"]["basis"] == "validation AP per class on heldout@1"
    params = labels.producer["params"]
    assert params["class_weights"] == {"person": [1.0, 0.5], "bed": [0.625, 1.0], "wheelchair": [1.0, 0.9444]}
    assert params["conf_type"] == "box_and_model_avg"


@pytest.mark.skipif(not mmdet_available(), reason="mmcv.ops does not import: run `make mmdet`")
def test_an_ensemble_of_a_torchvision_and_an_mmdet_model(engine: Context) -> None:
    add_model(engine, "tv-1", seed=1)
    torch.manual_seed(0)
    config = tiny_mmdet_config(num_classes=len(CLASSES), width=WIDTH, height=HEIGHT)
    mmdet_model = build_mmdet_model(config, device=torch.device("cpu"))
    save_mmdet_checkpoint(engine.store, "mm-1", model=mmdet_model, mmdet_config=config, classes=CLASSES)
    add_clip(engine, 0, seed=3, n_frames=4)
    engine.settings.autolabel_models = ["tv-1", "mm-1"]
    engine.settings.autolabel_min_track_frames = 1

    report = autolabel(engine)

    assert report.model_ids == ["tv-1", "mm-1"]
    labels = formats.load_annotations(engine.store, clip_id(0))
    assert labels.producer["models"] == ["tv-1", "mm-1"]
    assert [f.index for f in labels.frames] == [0, 1, 2, 3]
    boxes = [b for f in labels.frames for b in f.boxes]
    assert boxes
    assert {b.origin for b in boxes} <= {"ensemble", "interpolated"}


def test_ensemble_models_must_share_classes_and_settings_must_fit(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    add_clip(engine, 0, seed=3)
    other = build_detector("tiny_fasterrcnn", num_classes=2, min_size=96, max_size=128)
    save_checkpoint(
        engine.store,
        "m-9",
        model=other,
        arch="tiny_fasterrcnn",
        classes=["a", "b"],
        min_size=96,
        max_size=128,
    )
    engine.settings.autolabel_models = ["m-1", "m-9"]
    with pytest.raises(ModelError, match="must share their classes"):
        autolabel(engine)
    engine.settings.autolabel_models = ["m-1"]
    engine.settings.autolabel_class_thresholds = {"cat": 0.5}
    with pytest.raises(ConfigError, match="unknown classes \\['cat'\\]"):
        autolabel(engine)
    assert stages(engine)[clip_id(0)] == "selected"


def test_worker_processes_stream_frames_and_a_corrupt_clip_is_quarantined(engine: Context) -> None:
    add_model(engine, "m-1", seed=1)
    for i in range(3):
        add_clip(engine, 100 * i, seed=i, n_frames=5)
    bad = clip_id(100)
    engine.store.write_bytes(clips.frame_key(bad, 3), b"not a jpeg")

    progress = ProgressLog()
    report = autolabel(engine, workers=2, batch_size=3, progress=progress)

    assert report.clips == [clip_id(0), clip_id(200)]
    assert list(report.quarantined) == [bad]
    assert (progress.phases, progress.done) == ([("autolabel", 3)], 3)  # the quarantined clip counts
    assert "frame 3 is unreadable" in report.quarantined[bad]
    assert stages(engine) == {clip_id(0): "autolabelled", bad: "quarantined", clip_id(200): "autolabelled"}
    with engine.db.session() as session:
        (item,) = list_quarantine(session)
        assert (item.clip_id, item.stage, item.input) == (
            bad,
            "autolabel",
            engine.store.uri(clips.frame_key(bad, 3)),
        )
    for good in (clip_id(0), clip_id(200)):
        assert [f.index for f in formats.load_annotations(engine.store, good).frames] == [0, 1, 2, 3, 4]


def test_detections_cached_by_triggers_are_reused_without_reading_frames(
    engine: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(engine, "m-1", seed=1)
    add_clip(engine, 0, seed=1, n_frames=4)
    box = Detections(
        boxes_xyxy=np.array([[10.0, 20.0, 50.0, 80.0]], dtype=np.float32),
        scores=np.array([0.9], dtype=np.float32),
        labels=np.array([1], dtype=np.int64),
    )
    save_detections(
        engine.store, clip_id(0), "m-1", indices=[0, 1, 2, 3], detections=[box] * 4, min_score=0.05
    )

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model ran although every detection was cached")

    monkeypatch.setattr(Detector, "predict_batch", no_model)
    report = autolabel(engine)

    assert report.from_cache == [clip_id(0)]
    labels = formats.load_annotations(engine.store, clip_id(0))
    assert [[(b.label, b.xyxy, b.track, b.score) for b in f.boxes] for f in labels.frames] == [
        [("bed", (10.0, 20.0, 50.0, 80.0), 1, 0.9)]
    ] * 4


def test_no_model_at_all_is_a_model_error(engine: Context) -> None:
    add_clip(engine, 0, seed=1)
    with pytest.raises(ModelError, match="no promoted model yet"):
        autolabel(engine)


# End to end with a trained detector ---------------------------------------------------------------


def train_tiny(scenes: Sequence[SyntheticScene], *, epochs: int) -> torch.nn.Module:
    """A tiny detector trained on the scenes' frames (a few epochs of SGD, nothing downloaded)."""
    torch.manual_seed(0)
    model = build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)
    samples = [(rgb, boxes) for scene in scenes for _, rgb, boxes in scene.frames()]
    images = [torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0 for rgb, _ in samples]
    targets = [
        {
            "boxes": torch.tensor([b.xyxy for b in boxes], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([CLASSES.index(b.label) + 1 for b in boxes], dtype=torch.int64),
        }
        for _, boxes in samples
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=1e-4)
    steps = epochs * ((len(samples) + 3) // 4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.02, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(samples)).tolist()
        for start in range(0, len(order), 4):
            batch = order[start : start + 4]
            losses = model([images[i] for i in batch], [targets[i] for i in batch])
            optimizer.zero_grad()
            torch.autograd.backward(torch.stack(list(losses.values())).sum())
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
    return model.eval()


@pytest.mark.slow
def test_autolabel_of_a_synthetic_clip_overlaps_the_ground_truth(engine: Context) -> None:
    scenes = [
        SyntheticScene(seed=seed, width=WIDTH, height=HEIGHT, n_frames=30, n_objects=2)
        for seed in (11, 12, 13)
    ]
    add_model(engine, "m-1", seed=0, model=train_tiny(scenes, epochs=8))
    truth = add_clip(engine, 0, seed=11, n_frames=10, step=3)
    engine.settings.score_threshold = 0.5

    autolabel(engine)

    labels = formats.load_annotations(engine.store, clip_id(0))
    ious, found, total = [], 0, 0
    for frame, gt in zip(labels.frames, truth, strict=True):
        total += len(gt)
        if not gt or not frame.boxes:
            continue
        iou = pairwise_iou(np.array([b.xyxy for b in gt]), np.array([b.xyxy for b in frame.boxes]))
        best = iou.max(axis=1)
        found += int((best >= 0.5).sum())
        ious += best[best >= 0.5].tolist()
    assert total > 0
    # A 30-frame, 10-epoch CPU detector finds about half the objects (10 of 20 measured); the point here
    # is that what it finds comes out of the whole pipeline in the right place.
    assert found / total >= 0.4, f"recall {found}/{total}"
    assert float(np.mean(ious)) >= 0.6
    tracks = {b.track for f in labels.frames for b in f.boxes}
    assert len(tracks) <= 2 * len({b.track for gt in truth for b in gt})
