"""Training end to end on SQLite and a local store: dataset snapshots, torchrun DDP, evaluation, promotion.

The torchrun jobs are real (gloo on the CPU) and tiny: a few clips of a few 320x240 synthetic frames and
one epoch. The promotion tests need models of known quality without training them: an "oracle" (a random
detector whose own detections are the ground truth, so it scores mAP ~1) and a "blind" model (a zeroed
classifier that always says background, so it detects nothing and scores 0).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from sqlalchemy import func, select
from typer.testing import CliRunner

from dataengine import clips, formats
from dataengine.cli import app
from dataengine.config import load_settings
from dataengine.context import Context
from dataengine.errors import EmptyDatasetError, NotFoundError, TrainingError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import clip_events, get_clip, record_event, register_clip, set_stage
from dataengine.lineage.datasets import dataset_members
from dataengine.lineage.model_registry import get_model, promoted_model, register_model, set_model_status
from dataengine.lineage.models import ClipEvent, Dataset, DatasetClip, Model
from dataengine.lineage.quarantine import list_quarantine
from dataengine.lineage.videos import register_video
from dataengine.synthetic import SyntheticScene
from dataengine.training import (
    DatasetRef,
    TrainResult,
    build_dataset,
    evaluate,
    promote_if_better,
    read_manifest,
    train,
)
from dataengine.vision import (
    Detector,
    build_detector,
    load_checkpoint,
    load_detector,
    model_prefix,
    save_checkpoint,
)

pytestmark = pytest.mark.slow

CLASSES = ["person", "bed", "wheelchair"]
WIDTH, HEIGHT = 320, 240
STEP = 5  # source frames between two labelled frames
Labeller = Callable[[list[NDArray[np.uint8]]], list[list[Box]]]


# Synthetic reviewed clips -----------------------------------------------------------------------


def video_id_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def add_video(
    ctx: Context,
    name: str,
    *,
    n_clips: int = 2,
    n_frames: int = 3,
    source: formats.Source = "review",
    stage: str = "reviewed",
    labeller: Labeller | None = None,
) -> list[str]:
    """Register a synthetic video's clips with frames and one annotation version each; returns clip ids.

    Boxes are the scene's ground truth, or what ``labeller`` says about the decoded JPEG frames.
    """
    vid = video_id_of(name)
    length = n_frames * STEP
    scene = SyntheticScene(seed=int(vid[:6], 16), width=WIDTH, height=HEIGHT, n_frames=n_clips * length)
    rendered = {index: (rgb, boxes) for index, rgb, boxes in scene.frames() if index % STEP == 0}
    with ctx.db.session() as session:
        register_video(session, video_id=vid, uri=f"file:///landing/{name}.mp4", sha256=vid * 4)
    clip_ids = []
    for start in range(0, n_clips * length, length):
        clip_id = clips.clip_id_for(vid, start)
        indexes = list(range(0, length, STEP))
        images = []
        for index in indexes:
            jpeg = clips.encode_jpeg(rendered[start + index][0])
            ctx.store.write_bytes(clips.frame_key(clip_id, index), jpeg)
            images.append(clips.decode_jpeg(jpeg, source_name=clip_id))
        boxes = labeller(images) if labeller else [rendered[start + i][1] for i in indexes]
        frames = [
            Frame(index=i, image=clips.frame_name(i), width=WIDTH, height=HEIGHT, boxes=b)
            for i, b in zip(indexes, boxes, strict=True)
        ]
        annotations = ClipAnnotations(
            clip_id=clip_id, version=1, source=source, classes=CLASSES, frames=frames
        )
        saved = formats.save_annotations(ctx.store, annotations)
        register(ctx, clip_id, vid, start, length, saved, source=source, stage=stage)
        clip_ids.append(clip_id)
    return clip_ids


def register(
    ctx: Context,
    clip_id: str,
    vid: str,
    start: int,
    length: int,
    saved: formats.SavedAnnotation,
    *,
    source: str,
    stage: str,
) -> None:
    """Register the clip (if new) and its annotation version, and move it to ``stage``."""
    with ctx.db.session() as session:
        register_clip(
            session, clip_id=clip_id, video_id=vid, start_frame=start, end_frame=start + length,
            start_time=start / 10, n_frames=length, uri=ctx.store.uri(clips.clip_prefix(clip_id)),
        )  # fmt: skip
        record_annotation(
            session, clip_id=clip_id, version=saved.version, uri=saved.uri, sha256=saved.sha256,
            source=source, parent_version=saved.version - 1 or None, producer={},
            n_frames=saved.n_frames, n_boxes=saved.n_boxes,
        )  # fmt: skip
        if get_clip(session, clip_id).stage != stage:
            set_stage(session, clip_id, stage, run_id="test/setup")


def review_again(ctx: Context, clip_id: str) -> int:
    """A reviewer drops every box of the clip's first frame: a new annotation version."""
    old = formats.load_annotations(ctx.store, clip_id)
    frames = [replace(f, boxes=[] if i == 0 else f.boxes) for i, f in enumerate(old.frames)]
    new = replace(old, version=old.version + 1, parent_version=old.version, source="review", frames=frames)
    saved = formats.save_annotations(ctx.store, new)
    with ctx.db.session() as session:
        clip = get_clip(session, clip_id)
    length = clip.end_frame - clip.start_frame
    register(ctx, clip_id, clip.video_id, clip.start_frame, length, saved, source="review", stage="reviewed")
    return saved.version


def members(ctx: Context, dataset_id: str) -> dict[str, tuple[int, str]]:
    """clip id -> (annotation version, split) of a dataset version."""
    with ctx.db.session() as session:
        return {m.clip_id: (m.annotation_version, m.split) for m in dataset_members(session, dataset_id)}


def count(ctx: Context, table: type[Any]) -> int:
    with ctx.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def events(ctx: Context, clip_id: str, *, status: str | None = None) -> list[ClipEvent]:
    with ctx.db.session() as session:
        found = clip_events(session, clip_id)
    return [e for e in found if status is None or e.status == status]


def written(ctx: Context) -> tuple[list[str], int, int, int]:
    """What a dataset build writes: manifests, dataset rows, member rows and clip events."""
    return ctx.store.list("datasets"), count(ctx, Dataset), count(ctx, DatasetClip), count(ctx, ClipEvent)


def split_truth(ctx: Context, dataset_id: str, split: str) -> tuple[int, int]:
    """(labelled frames, boxes) of a split, read straight from the members' annotation files."""
    n_frames = n_boxes = 0
    for clip_id, (version, member_split) in members(ctx, dataset_id).items():
        if member_split == split:
            annotations = formats.load_annotations(ctx.store, clip_id, version)
            n_frames, n_boxes = n_frames + len(annotations.frames), n_boxes + annotations.n_boxes
    return n_frames, n_boxes


# build_dataset ----------------------------------------------------------------------------------


def test_build_dataset_versions_follow_the_members(ctx: Context) -> None:
    for name in ("north", "south"):
        add_video(ctx, name, n_frames=2)

    first = build_dataset(ctx)
    before = written(ctx)
    again = build_dataset(ctx)
    after = written(ctx)
    (new_clip,) = add_video(ctx, "east", n_clips=1, n_frames=2)
    second = build_dataset(ctx)
    edited = sorted(members(ctx, second.dataset_id))[0]
    version = review_again(ctx, edited)
    third = build_dataset(ctx)

    assert (first.dataset_id, first.version, first.created, first.n_clips) == ("default@1", 1, True, 4)
    assert again == replace(first, created=False)
    assert after == before  # the rerun wrote nothing: no manifest, row or event
    assert before[1:3] == (2, 6)  # default@1 (4 clips) and its held-out set default-heldout@1 (2 clips)
    assert first.heldout_id == second.heldout_id == third.heldout_id == "default-heldout@1"
    assert first.diff == {"previous": None, "added": 4, "removed": 0, "relabelled": 0}
    assert second.diff == {"previous": "default@1", "added": 1, "removed": 0, "relabelled": 0}
    assert third.diff == {"previous": "default@2", "added": 0, "removed": 0, "relabelled": 1}
    assert (second.version, second.created, second.n_clips) == (2, True, 5)
    assert new_clip in members(ctx, second.dataset_id)
    assert new_clip not in members(ctx, first.dataset_id)
    assert (third.version, third.created, version) == (3, True, 2)
    assert members(ctx, third.dataset_id)[edited][0] == 2
    assert members(ctx, second.dataset_id)[edited][0] == 1  # older versions never change
    assert ctx.store.list("datasets") == [
        *(f"datasets/default-heldout/v0001/{f}" for f in ("manifest.index.npz", "manifest.jsonl")),
        *(
            f"datasets/default/v{v:04d}/{f}"
            for v in (1, 2, 3)
            for f in ("diff.json", "manifest.index.npz", "manifest.jsonl")
        ),
    ]
    assert ctx.store.read_json("datasets/default/v0003/diff.json") == {
        "base": "default@2", "target": "default@3", "added": [], "removed": [],
        "relabelled": [[edited, 1, 2]],
    }  # fmt: skip


def test_build_dataset_splits_by_video(ctx: Context) -> None:
    names = ["cam-a", "cam-b", "cam-c", "cam-d", "cam-e", "cam-f"]
    for name in names:
        add_video(ctx, name, n_frames=1)

    ref = build_dataset(ctx)
    splits_of_video: dict[str, set[str]] = {}
    for clip_id, (_, split) in members(ctx, ref.dataset_id).items():
        splits_of_video.setdefault(clip_id.split("-")[0], set()).add(split)
    entries = read_manifest(ctx.store, ref.manifest_uri)

    assert all(len(splits) == 1 for splits in splits_of_video.values())
    val_videos = [video for video, splits in splits_of_video.items() if splits == {"val"}]
    assert 1 <= len(val_videos) < len(names)
    assert (ref.n_val, ref.n_train) == (2 * len(val_videos), 2 * (len(names) - len(val_videos)))
    assert {e.clip_id: (e.annotation_version, e.split) for e in entries} == members(ctx, ref.dataset_id)
    for entry in entries:
        assert entry.sha256 == formats.sha256_hex(ctx.store.read_bytes(ctx.store.key_of(entry.uri)))
        assert entry.frames == (0,)


@pytest.mark.parametrize("names", [("one", "two"), ("alpha", "beta"), ("left", "right")])
def test_two_videos_give_one_train_and_one_val_video(ctx: Context, names: tuple[str, str]) -> None:
    for name in names:
        add_video(ctx, name, n_clips=1, n_frames=1)

    ref = build_dataset(ctx)

    assert (ref.n_train, ref.n_val) == (1, 1)


def test_member_clips_move_to_in_dataset_with_an_event_naming_it(ctx: Context) -> None:
    clip_ids = add_video(ctx, "ward", n_frames=1) + add_video(ctx, "hall", n_frames=1)
    first = build_dataset(ctx)
    add_video(ctx, "lobby", n_clips=1, n_frames=1)
    second = build_dataset(ctx)

    with ctx.db.session() as session:
        stages = {get_clip(session, c).stage for c in clip_ids}
    assert stages == {"in_dataset"}
    for clip_id in clip_ids:
        joined = [e for e in events(ctx, clip_id) if e.stage == "in_dataset"]
        assert [e.details["dataset_id"] for e in joined] == [first.dataset_id, second.dataset_id]
        assert joined[0].details["split"] == members(ctx, first.dataset_id)[clip_id][1]
        assert {e.run_id for e in joined} == {ctx.run_id}


def test_build_dataset_refuses_when_nothing_is_reviewed(ctx: Context) -> None:
    with pytest.raises(EmptyDatasetError, match="nothing reviewed yet"):
        build_dataset(ctx)
    add_video(ctx, "pending", source="autolabel", stage="autolabelled", labeller=lambda f: [[] for _ in f])
    with pytest.raises(EmptyDatasetError, match="nothing reviewed yet"):
        build_dataset(ctx)

    assert count(ctx, Dataset) == 0
    assert ctx.store.list("datasets") == []


def test_a_corrupt_annotation_file_is_quarantined_and_the_rest_goes_on(ctx: Context) -> None:
    broken, *good = add_video(ctx, "cam-1", n_frames=1) + add_video(ctx, "cam-2", n_frames=1)
    key = formats.annotation_key(broken, 1)
    ctx.store.write_bytes(key, ctx.store.read_bytes(key).replace(b'"version": 1', b'"version": 1 '))

    ref = build_dataset(ctx)

    assert sorted(members(ctx, ref.dataset_id)) == sorted(good)
    with ctx.db.session() as session:
        assert get_clip(session, broken).stage == "quarantined"
        (item,) = list_quarantine(session)
    assert (item.clip_id, item.input) == (broken, ctx.store.uri(key))
    assert "sha256" in item.reason


# Models -----------------------------------------------------------------------------------------


def tiny_model(seed: int) -> torch.nn.Module:
    """An untrained tiny detector for the test classes."""
    torch.manual_seed(seed)
    return build_detector("tiny_fasterrcnn", num_classes=len(CLASSES), min_size=HEIGHT, max_size=WIDTH)


def store_model(
    ctx: Context, model_id: str, model: torch.nn.Module, *, status: str, dataset_id: str | None
) -> None:
    """Save the model's checkpoint and register it."""
    uri = save_checkpoint(
        ctx.store, model_id, model=model, arch="tiny_fasterrcnn", classes=CLASSES,
        min_size=HEIGHT, max_size=WIDTH,
    )  # fmt: skip
    with ctx.db.session() as session:
        register_model(
            session, model_id=model_id, checkpoint_uri=uri, dataset_id=dataset_id,
            parent_model_id=None, status=status,
        )  # fmt: skip


def status_of(ctx: Context, model_id: str) -> str:
    with ctx.db.session() as session:
        return get_model(session, model_id).status


# train: real torchrun ---------------------------------------------------------------------------


@dataclass
class Trained:
    """A dataset and the model torchrun trained on it with two ranks, beside a promoted seed model."""

    ctx: Context
    dataset: DatasetRef
    result: TrainResult


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One torchrun job (nproc=2, one epoch) on 4 videos x 2 clips x 3 frames; warm starts off."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("DATAENGINE_")]:
            patch.delenv(name)
        patch.chdir(root)
        settings = load_settings(
            database_url=f"sqlite:///{root / 'lineage.db'}",
            storage_url=f"file://{root / 'store'}",
            train_epochs=1,
            train_nproc=2,
            train_warm_start=False,
            device="cpu",
        )
        ctx = Context.create(settings, run_id="test/train")
        for name in ("ward-1", "ward-2", "ward-3", "ward-4"):
            add_video(ctx, name)
        store_model(ctx, "m-seed", tiny_model(seed=123), status="promoted", dataset_id=None)
        dataset = build_dataset(ctx)
        result = train(ctx)
    yield Trained(ctx=ctx, dataset=dataset, result=result)
    ctx.close()


def test_train_writes_the_checkpoint_and_its_record(trained: Trained) -> None:
    store, result = trained.ctx.store, trained.result
    record = store.read_json(f"{model_prefix(result.model_id)}/training.json")
    config, state_dict = load_checkpoint(store, result.model_id)
    n_train_frames = split_truth(trained.ctx, trained.dataset.dataset_id, "train")[0]

    assert result.created
    assert result.checkpoint_uri == store.uri(f"models/{result.model_id}/model.pt")
    assert store.exists(f"models/{result.model_id}/config.json")
    assert (record["world_size"], record["backend"], record["device"]) == (2, "gloo", "cpu")
    assert record["n_train_frames"] == result.n_train_frames == n_train_frames > 0
    assert [e["epoch"] for e in record["epochs"]] == [0]
    assert np.isfinite(record["epochs"][0]["loss"])
    assert record["wall_seconds"] == pytest.approx(result.train_seconds)
    assert record["dataset_id"] == trained.dataset.dataset_id
    assert (config["arch"], config["classes"]) == ("tiny_fasterrcnn", CLASSES)
    assert (config["train_args"]["epochs"], config["train_args"]["init_model_id"]) == (1, "")
    assert config["train_args"]["manifest"] == trained.dataset.manifest_uri
    assert set(state_dict) == set(load_detector(store, result.model_id, device="cpu").model.state_dict())


def test_the_model_row_is_a_candidate_child_of_the_promoted_model(trained: Trained) -> None:
    with trained.ctx.db.session() as session:
        row = get_model(session, trained.result.model_id)
        promoted = promoted_model(session)

    assert (row.status, row.parent_model_id, row.dataset_id) == ("candidate", "m-seed", "default@1")
    assert row.checkpoint_uri == trained.result.checkpoint_uri
    assert row.metrics["train"]["world_size"] == 2
    assert promoted is not None
    assert promoted.id == "m-seed"


def test_training_again_returns_the_same_model_and_launches_nothing(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_launch(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a second torchrun was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_launch)
    models = count(trained.ctx, Model)

    again = train(trained.ctx)

    assert (again.model_id, again.created) == (trained.result.model_id, False)
    assert again.train_seconds == pytest.approx(trained.result.train_seconds)
    assert count(trained.ctx, Model) == models


def test_a_warm_start_begins_at_the_promoted_weights_and_is_another_model(trained: Trained) -> None:
    # A warm start runs train_warm_epochs (1 here), not train_epochs (2).
    update = {"train_warm_start": True, "train_epochs": 2, "train_warm_epochs": 1}
    warm_ctx = Context.create(trained.ctx.settings.model_copy(update=update), run_id="test/warm")
    try:
        warm = train(warm_ctx, nproc=1)
    finally:
        warm_ctx.close()
    config, warm_weights = load_checkpoint(trained.ctx.store, warm.model_id)
    record = trained.ctx.store.read_json(f"{model_prefix(warm.model_id)}/training.json")
    _, seed_weights = load_checkpoint(trained.ctx.store, "m-seed")
    _, cold_weights = load_checkpoint(trained.ctx.store, trained.result.model_id)
    with trained.ctx.db.session() as session:
        parent = get_model(session, warm.model_id).parent_model_id

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        name = "backbone.body.0.0.weight"
        return float((a[name] - b[name]).norm())

    assert warm.created
    assert warm.model_id != trained.result.model_id
    assert config["train_args"]["init_model_id"] == "m-seed"
    assert (config["train_args"]["epochs"], config["train_args"]["warm_epochs"]) == (2, 1)
    assert [e["epoch"] for e in record["epochs"]] == [0]
    assert parent == "m-seed"
    # One epoch moves the weights a little: the warm model is still near the seed, the cold one is not.
    assert distance(warm_weights, seed_weights) < 0.5 * distance(cold_weights, seed_weights)


def test_evaluate_scores_the_val_split(trained: Trained) -> None:
    ctx, model_id, dataset_id = trained.ctx, trained.result.model_id, trained.dataset.dataset_id

    val = evaluate(ctx, model_id=model_id)
    everything = evaluate(ctx, model_id=model_id, dataset=dataset_id, split="all")

    for metrics in (val, everything):
        assert metrics.map is not None
        assert metrics.map50 is not None
        assert metrics.mar100 is not None
        assert 0.0 <= metrics.map <= metrics.map50 <= 1.0
        assert 0.0 <= metrics.mar100 <= 1.0
        assert sum(score.support or 0 for score in metrics.classes) == metrics.n_gt_boxes
        assert all((score.ap is None) == (score.support == 0) for score in metrics.classes)
    assert (val.n_images, val.n_gt_boxes) == split_truth(ctx, dataset_id, "val")
    train_frames, train_boxes = split_truth(ctx, dataset_id, "train")
    assert everything.n_images == val.n_images + train_frames
    assert everything.n_gt_boxes == val.n_gt_boxes + train_boxes
    with pytest.raises(NotFoundError, match="no split 'test'"):
        evaluate(ctx, model_id=model_id, split="test")
    with pytest.raises(NotFoundError, match="has no edge-case set"):
        evaluate(ctx, model_id=model_id, split="edgecases")


def test_a_failed_job_raises_with_the_end_of_its_stderr(ctx: Context) -> None:
    for name in ("night", "day"):
        add_video(ctx, name, n_clips=1, n_frames=2)
    ref = build_dataset(ctx)
    (lost,) = [e for e in read_manifest(ctx.store, ref.manifest_uri) if e.split == "train"]
    ctx.store.delete(ctx.store.key_of(lost.uri))

    with pytest.raises(TrainingError, match="torchrun exited with code 1") as info:
        train(ctx, nproc=1)

    assert f"dataengine training failed on rank 0: {lost.uri}: no such object" in str(info.value)
    assert count(ctx, Model) == 0
    assert ctx.store.list("models") == []


def test_a_diverging_job_stops_every_rank_with_the_reason(ctx: Context) -> None:
    for name in ("night", "day"):
        add_video(ctx, name, n_frames=4)
    build_dataset(ctx)
    diverging = replace(ctx, settings=ctx.settings.model_copy(update={"train_lr": 1e20}))

    with pytest.raises(TrainingError, match="torchrun exited with code 1") as info:
        train(diverging, nproc=2, epochs=2)

    stops = re.findall(r"failed on rank (\d): loss is (?:nan|inf) at epoch (\d+) step (\d+)", str(info.value))
    assert stops
    assert {rank for rank, _, _ in stops} <= {"0", "1"}
    assert len({(epoch, step) for _, epoch, step in stops}) == 1  # the ranks agree where to stop
    assert "Lower train_lr" in str(info.value)
    assert count(ctx, Model) == 0


# evaluate and promote_if_better with models of known quality ------------------------------------


def oracle_labeller(model: torch.nn.Module) -> Labeller:
    """Labels that are exactly the model's own detections (clamped into the frame)."""
    detector = Detector(model, classes=CLASSES, model_id="m-oracle", device=torch.device("cpu"))

    def box(xyxy: list[float], label: int) -> Box:
        x1, y1, x2, y2 = (
            min(max(v, 0.0), float(side)) for v, side in zip(xyxy, (WIDTH, HEIGHT) * 2, strict=True)
        )
        return Box(CLASSES[label], (x1, y1, x2, y2), origin="human")

    def label(images: list[NDArray[np.uint8]]) -> list[list[Box]]:
        found = detector.predict(images)
        return [
            [box(xyxy, int(c)) for xyxy, c in zip(d.boxes_xyxy.tolist(), d.labels, strict=True)]
            for d in found
        ]

    return label


def blind_model() -> torch.nn.Module:
    """A detector whose classifier always says background: it detects nothing."""
    model = tiny_model(seed=7)
    classifier = model.get_submodule("roi_heads.box_predictor.cls_score")
    assert isinstance(classifier, torch.nn.Linear)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([20.0] + [-20.0] * len(CLASSES)))
    return model


@pytest.fixture
def scored(ctx: Context) -> Context:
    """A dataset labelled by the "oracle" model, with the oracle and the "blind" model as candidates."""
    oracle = tiny_model(seed=7)
    for name in ("bay-1", "bay-2", "bay-3"):
        add_video(ctx, name, n_clips=1, labeller=oracle_labeller(oracle))
    ref = build_dataset(ctx)
    store_model(ctx, "m-oracle", oracle, status="candidate", dataset_id=ref.dataset_id)
    store_model(ctx, "m-blind", blind_model(), status="candidate", dataset_id=ref.dataset_id)
    return ctx


def test_evaluate_a_model_with_no_detections_scores_zero(scored: Context) -> None:
    blind = evaluate(scored, model_id="m-blind")
    oracle = evaluate(scored, model_id="m-oracle")

    n_frames, n_boxes = split_truth(scored, "default@1", "val")
    assert (blind.map, blind.map50, blind.n_detections) == (0.0, 0.0, 0)
    assert oracle.map is not None
    assert oracle.map > 0.9
    assert (blind.n_images, blind.n_gt_boxes) == (oracle.n_images, oracle.n_gt_boxes)
    assert (oracle.n_images, oracle.n_gt_boxes) == (n_frames, n_boxes)
    # A class with examples and no detection is a measured 0.0; one without examples is n/a.
    for score in blind.classes:
        assert (score.ap, score.support == 0) == ((None, True) if not score.support else (0.0, False))
    assert n_boxes > 0


def test_a_class_without_examples_is_na_in_evaluate_metrics_json_and_status(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bed in the held-out frames: every output says n/a (0 examples) for it, never 0.0."""
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    oracle = tiny_model(seed=7)
    labels = oracle_labeller(oracle)
    for name in ("nb-1", "nb-2", "nb-3"):
        add_video(
            ctx,
            name,
            n_clips=1,
            labeller=lambda im: [[b for b in bs if b.label != "bed"] for bs in labels(im)],
        )
    ref = build_dataset(ctx)
    store_model(ctx, "m-oracle", oracle, status="candidate", dataset_id=ref.dataset_id)
    promote_if_better(ctx, model_id="m-oracle")

    runner = CliRunner()
    human = runner.invoke(app, ["evaluate", "m-oracle"])
    as_json = runner.invoke(app, ["evaluate", "m-oracle", "--json"])
    status = runner.invoke(app, ["status"])

    assert human.exit_code == 0, human.output
    (bed_row,) = [line for line in human.output.splitlines() if line.startswith("bed ")]
    assert bed_row.split() == ["bed", "n/a", "(0", "examples)", "0"]
    assert json.loads(as_json.output)["per_class"]["bed"] == {"ap": None, "ap50": None, "support": 0}
    stored = ctx.store.read_json("models/m-oracle/metrics.json")["metrics"]["per_class"]
    assert stored["bed"] == {"ap": None, "ap50": None, "support": 0}
    assert any(c["support"] and c["ap"] > 0.9 for c in stored.values())  # the other classes were measured
    assert status.exit_code == 0, status.output
    assert "bed n/a (0 examples)" in status.output
    assert "bed 0.0" not in status.output + human.output


def test_the_first_model_is_promoted(scored: Context) -> None:
    decision = promote_if_better(scored, model_id="m-oracle")

    assert decision.promoted
    assert (decision.previous_model_id, decision.previous_map) == (None, None)
    assert decision.reason == "no model is promoted yet"
    assert decision.held_out == "default-heldout@1"
    assert status_of(scored, "m-oracle") == "promoted"
    doc = scored.store.read_json("models/m-oracle/metrics.json")
    assert decision.new_map is not None
    assert doc["metrics"]["map"] == decision.new_map > 0.9
    for clip_id in members(scored, "default@1"):
        (event,) = events(scored, clip_id, status="trained")
        assert event.details == {"model_id": "m-oracle", "promoted": True, "dataset_id": "default@1"}


def test_a_worse_candidate_is_rejected_and_the_promoted_model_stays(scored: Context) -> None:
    first = promote_if_better(scored, model_id="m-oracle")

    decision = promote_if_better(scored, model_id="m-blind")

    assert not decision.promoted
    assert (decision.new_map, decision.previous_model_id) == (0.0, "m-oracle")
    assert first.new_map is not None
    assert decision.previous_map == first.new_map > 0.9
    assert decision.reason.startswith("refused: ")
    assert "regression mAP on default-heldout@1: 0.000 against" in decision.reason
    assert "more than the tolerance 0.020" in decision.reason
    assert (status_of(scored, "m-blind"), status_of(scored, "m-oracle")) == ("rejected", "promoted")
    doc = scored.store.read_json("models/m-blind/metrics.json")
    assert (doc["metrics"]["map"], doc["previous"]["metrics"]["map"]) == (0.0, first.new_map)
    assert doc["previous"]["model_id"] == "m-oracle"
    for clip_id in members(scored, "default@1"):
        trained_events = events(scored, clip_id, status="trained")
        assert [(e.details["model_id"], e.details["promoted"]) for e in trained_events] == [
            ("m-oracle", True),
            ("m-blind", False),
        ]


def test_a_better_candidate_replaces_the_promoted_model(scored: Context) -> None:
    promote_if_better(scored, model_id="m-blind")  # the first model is promoted, however poor

    decision = promote_if_better(scored, model_id="m-oracle")

    assert decision.promoted
    assert (decision.previous_model_id, decision.previous_map) == ("m-blind", 0.0)
    assert (status_of(scored, "m-oracle"), status_of(scored, "m-blind")) == ("promoted", "retired")


def test_a_tie_does_not_replace_the_promoted_model(scored: Context) -> None:
    promote_if_better(scored, model_id="m-oracle")
    twin = load_detector(scored.store, "m-oracle").model
    store_model(scored, "m-twin", twin, status="candidate", dataset_id="default@1")

    decision = promote_if_better(scored, model_id="m-twin")

    assert not decision.promoted
    assert decision.new_map == pytest.approx(decision.previous_map)
    assert status_of(scored, "m-oracle") == "promoted"


def test_a_round_is_judged_on_both_held_out_sets(ctx: Context) -> None:
    """Triggered val clips make an edge-case set; both models are scored on it and the gate reads it."""
    ctx = replace(ctx, settings=ctx.settings.model_copy(update={"val_fraction": 0.5}))
    oracle = tiny_model(seed=7)
    for name in ("edge-1", "edge-2", "edge-3", "edge-4"):
        clip_ids = add_video(ctx, name, n_clips=1, labeller=oracle_labeller(oracle))
        with ctx.db.session() as session:
            record_event(session, clip_ids[0], "selected", status="ok", details={"trigger": "rare_class"})
    ref = build_dataset(ctx)
    store_model(ctx, "m-oracle", oracle, status="candidate", dataset_id=ref.dataset_id)
    store_model(ctx, "m-blind", blind_model(), status="candidate", dataset_id=ref.dataset_id)
    promote_if_better(ctx, model_id="m-oracle")

    decision = promote_if_better(ctx, model_id="m-blind")
    edge = evaluate(ctx, model_id="m-oracle", dataset=ref.dataset_id, split="edgecases")

    assert ref.edge_cases_id == "default-edgecases@1"
    assert (edge.held_out, (edge.n_images, edge.n_gt_boxes)) == (
        "default-edgecases@1",
        split_truth(ctx, "default-edgecases@1", "val"),
    )
    assert edge.map is not None
    assert edge.map > 0.9
    assert (decision.edge_case, decision.new_edge_map, decision.previous_edge_map) == (
        "default-edgecases@1",
        0.0,
        edge.map,
    )
    assert not decision.promoted
    assert "edge-case mAP on default-edgecases@1: 0.000 against" in decision.reason
    doc = ctx.store.read_json("models/m-blind/metrics.json")
    assert doc["edge_case"]["held_out"] == "default-edgecases@1"
    assert doc["edge_case"]["previous_metrics"]["map"] == edge.map
    with ctx.db.session() as session:
        stored = get_model(session, "m-blind").metrics
    assert (stored["edge_case"], stored["edge_eval"]["map"]) == ("default-edgecases@1", 0.0)
    # The promoted model's score on the same frames, for the Models page.
    assert (stored["promoted_model_id"], stored["promoted_edge_eval"]["map"]) == ("m-oracle", edge.map)


def test_deciding_again_returns_the_same_decision_and_records_nothing(
    scored: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = ("m-oracle", "m-blind")
    decisions = [promote_if_better(scored, model_id=m) for m in models]
    n_events = count(scored, ClipEvent)
    files = [scored.store.read_bytes(f"models/{m}/metrics.json") for m in models]
    monkeypatch.setattr("dataengine.training.registry.evaluate", lambda *a, **k: pytest.fail("evaluated"))

    again = [promote_if_better(scored, model_id=m) for m in models]

    assert again == decisions
    assert count(scored, ClipEvent) == n_events
    assert [scored.store.read_bytes(f"models/{m}/metrics.json") for m in models] == files
    assert json.loads(files[1])["decision"]["promoted"] is False


def test_training_again_after_a_promotion_returns_the_model_of_that_dataset(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm start follows the promoted model, but a rerun on the same data must not train again."""
    settings = trained.ctx.settings.model_copy(update={"train_warm_start": True})
    ctx = Context.create(settings, run_id="test/rerun-after-promotion")
    try:
        first = train(ctx, nproc=1)
        with ctx.db.session() as session:
            set_model_status(session, first.model_id, "promoted")
        monkeypatch.setattr(subprocess, "Popen", _no_launch)
        again = train(ctx, nproc=1)
    finally:
        ctx.close()
    assert again.model_id == first.model_id
    assert again.created is False


def _no_launch(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("torchrun must not start")
