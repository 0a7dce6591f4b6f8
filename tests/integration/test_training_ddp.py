"""Training for real: 2-rank gloo DDP whose loss falls, resume after a killed job, S3 data, the margin."""

from __future__ import annotations

import io
import signal
import subprocess
import time
from dataclasses import replace

import psutil  # type: ignore[import-untyped]
import pytest
import torch
from test_training import (
    CLASSES,
    add_video,
    blind_model,
    oracle_labeller,
    store_model,
    tiny_model,
)
from torch.utils.data import DataLoader

from dataengine import clips, formats
from dataengine.context import Context
from dataengine.errors import TrainingError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.lineage.model_registry import get_model
from dataengine.storage import ObjectStore
from dataengine.training import (
    ClipFrameDataset,
    ManifestEntry,
    build_dataset,
    collate,
    promote_if_better,
    train,
)
from dataengine.training.manifest import resolve_dataset
from dataengine.training.registry import evaluation_key
from dataengine.training.resume import resume_key
from dataengine.training.runner import (
    _child_env,
    model_id_for,
    run_torchrun,
    torchrun_command,
    training_args,
)
from dataengine.training.sampling import ShuffledShardSampler
from progress_log import ProgressLog

pytestmark = pytest.mark.slow


def cpu_ctx(ctx: Context, **update: object) -> Context:
    return replace(ctx, settings=ctx.settings.model_copy(update={"device": "cpu", **update}))


def test_two_gloo_ranks_train_one_epoch_and_the_loss_falls(ctx: Context) -> None:
    ctx = cpu_ctx(ctx, train_warm_start=False)
    for name in ("ddp-1", "ddp-2", "ddp-3", "ddp-4"):
        add_video(ctx, name, n_clips=3, n_frames=4)
    build_dataset(ctx)

    result = train(ctx, nproc=2, epochs=1)

    record = ctx.store.read_json(f"models/{result.model_id}/training.json")
    (epoch,) = record["epochs"]
    assert (record["world_size"], record["backend"], record["device"]) == (2, "gloo", "cpu")
    assert record["n_train_frames"] == result.n_train_frames >= 24
    assert epoch["loss_last"] < epoch["loss_first"]
    with ctx.db.session() as session:
        model = get_model(session, result.model_id)
    config = model.metrics["config"]
    assert (config["arch"], config["classes"]) == ("tiny_fasterrcnn", CLASSES)
    assert config["train_args"]["epochs"] == 1
    checkpoint = torch.load(io.BytesIO(ctx.store.read_bytes(resume_key(result.model_id))), weights_only=True)
    assert checkpoint["config"]["manifest"] == config["train_args"]["manifest"]
    assert checkpoint["next_epoch"] == 1


def test_a_killed_job_resumes_from_its_last_epoch(ctx: Context) -> None:
    ctx = cpu_ctx(ctx, train_warm_start=False)
    for name in ("res-1", "res-2", "res-3"):
        add_video(ctx, name, n_clips=3, n_frames=4)
    build_dataset(ctx)
    with ctx.db.session() as session:
        row = resolve_dataset(session, None)
    args = training_args(ctx, row, nproc=1, epochs=4)
    model_id = model_id_for(row.id, args)
    command = torchrun_command(
        args, store_url=ctx.store.url, manifest_uri=row.manifest_uri, dataset_id=row.id,
        model_id=model_id, device="cpu",
    )  # fmt: skip
    job = subprocess.Popen(
        command, env=_child_env(ctx, 1),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not ctx.store.exists(resume_key(model_id)) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # The crash: torchrun and every rank die at once (the ranks run in sessions of their own).
    for process in [*psutil.Process(job.pid).children(recursive=True), psutil.Process(job.pid)]:
        process.send_signal(signal.SIGKILL)
    job.wait()
    assert not ctx.store.exists(f"models/{model_id}/training.json"), "the job finished before the kill"
    saved = torch.load(io.BytesIO(ctx.store.read_bytes(resume_key(model_id))), weights_only=True)

    progress = ProgressLog()
    result = train(ctx, nproc=1, epochs=4, progress=progress)

    record = ctx.store.read_json(f"models/{model_id}/training.json")
    # The bar starts at the epochs done before the crash and shows each later epoch's loss.
    assert progress.phases == [(f"train {model_id}", 4)]
    assert progress.done == 4
    assert progress.advances[0][0] == saved["next_epoch"] + 1
    loss = record["epochs"][-1]["loss"]
    assert progress.advances[-1] == (1, f"train epoch 4/4, loss {loss:.4f}")
    assert result.model_id == model_id
    assert 1 <= record["resumed_from_epoch"] == saved["next_epoch"] < 4
    assert [e["epoch"] for e in record["epochs"]] == [0, 1, 2, 3]
    assert record["epochs"][: saved["next_epoch"]] == saved["epochs"]  # the finished epochs are kept
    with ctx.db.session() as session:
        assert get_model(session, model_id).metrics["train"]["resumed_from_epoch"] >= 1


def test_run_torchrun_reports_a_missing_manifest(ctx: Context) -> None:
    args = {"arch": "tiny_fasterrcnn", "classes": CLASSES, "nproc": 1, "epochs": 1}
    command = torchrun_command(
        args, store_url=ctx.store.url, manifest_uri=ctx.store.uri("datasets/none/manifest.jsonl"),
        dataset_id="none@1", model_id="m-missing", device="cpu",
    )  # fmt: skip

    with pytest.raises(TrainingError, match=r"failed on rank 0: .*none/manifest\.jsonl"):
        run_torchrun(command, _child_env(ctx, 1), what="missing manifest")


# The Dataset on S3 ----------------------------------------------------------------------------


@pytest.mark.s3
def test_the_dataset_reads_s3_with_zero_box_frames_and_a_distributed_sampler(s3_store: ObjectStore) -> None:
    frames = {0: [Box("person", (1.0, 2.0, 30.0, 40.0), origin="human")], 5: [], 10: []}
    lines = []
    for c, video in enumerate(("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb")):
        clip_id = clips.clip_id_for(video, 0)
        for index in frames:
            s3_store.write_bytes(clips.frame_key(clip_id, index), clips.encode_jpeg(torch.full(
                (48, 64, 3), 40 * (c + 1), dtype=torch.uint8).numpy()))  # fmt: skip
        saved = formats.save_annotations(
            s3_store,
            ClipAnnotations(
                clip_id=clip_id, version=1, source="review", classes=CLASSES,
                frames=[Frame(index=i, image=clips.frame_name(i), width=64, height=48, boxes=b)
                        for i, b in frames.items()],
            ),
        )  # fmt: skip
        entry = ManifestEntry(clip_id, video, 1, saved.uri, saved.sha256, "train", (0, 5, 10), 64, 48, 1)
        lines.append(entry.to_json_line())
    s3_store.write_text("datasets/s3/v0001/manifest.jsonl", "\n".join(lines) + "\n")
    dataset = ClipFrameDataset(
        s3_store, s3_store.uri("datasets/s3/v0001/manifest.jsonl"), split="train", classes=CLASSES
    )

    seen = []
    for rank in (0, 1):
        sampler = ShuffledShardSampler(len(dataset), seed=0, rank=rank, world_size=2)  # as training shards
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2, collate_fn=collate)
        for images, targets in loader:
            for image, target in zip(images, targets, strict=True):
                seen.append((tuple(image.shape), tuple(target["boxes"].shape), target["labels"].tolist()))

    assert len(dataset) == 6
    assert len(seen) == 6  # the two shards cover every frame once
    assert sorted(s[1] for s in seen) == [(0, 4)] * 4 + [(1, 4)] * 2  # zero-box frames are samples
    assert all(shape == (3, 48, 64) for shape, _, _ in seen)
    assert sorted(labels for _, _, labels in seen) == [[], [], [], [], [1], [1]]


# The promotion margin -------------------------------------------------------------------------


def test_a_better_candidate_within_the_margin_is_rejected(ctx: Context) -> None:
    oracle = tiny_model(seed=7)
    for name in ("m-1", "m-2", "m-3"):
        add_video(ctx, name, n_clips=1, labeller=oracle_labeller(oracle))
    ref = build_dataset(ctx)
    store_model(ctx, "m-blind", blind_model(), status="candidate", dataset_id=ref.dataset_id)
    store_model(ctx, "m-oracle", oracle, status="candidate", dataset_id=ref.dataset_id)
    promote_if_better(ctx, model_id="m-blind")
    strict = cpu_ctx(ctx, promote_min_delta=1.0)  # no mAP can beat 0.0 by more than 1.0

    decision = promote_if_better(strict, model_id="m-oracle")

    assert not decision.promoted
    assert decision.new_map is not None
    assert decision.new_map > 0.9
    assert decision.reason.startswith(
        "refused: 1 of 3 checks failed: regression mAP rises on default-heldout@1 (no edge-case set with "
        f"boxes yet): {decision.new_map:.3f} against 0.000 of m-blind, rose {decision.new_map:.3f} "
        "(more than 1.000 needed); passed: regression mAP on default-heldout@1"
    )
    comparison = ctx.store.read_json(evaluation_key("m-oracle"))
    assert comparison["held_out"] == ref.heldout_id == "default-heldout@1"
    assert comparison["previous"]["model_id"] == "m-blind"
    assert comparison["edge_case"] is None  # no clip came in through a trigger
    assert set(comparison["metrics"]["per_class"]) == set(CLASSES)
    measured = [c for c in comparison["metrics"]["per_class"].values() if c["support"]]
    assert max(c["ap"] for c in measured) > 0.9
    with ctx.db.session() as session:
        model = get_model(session, "m-oracle")
    assert (model.status, model.dataset_id) == ("rejected", ref.dataset_id)
    assert model.metrics["eval"]["per_class"] == comparison["metrics"]["per_class"]
