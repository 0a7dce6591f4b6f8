"""The torchrun entry point: ``python -m torch.distributed.run ... -m dataengine.training.ddp ARGS``.

Wiring only, after torchvision's detection reference: parse the arguments, join the process group, build
the per-clip dataset with a sharded shuffling sampler (``sampling.ShuffledShardSampler``), train
(resuming from the last epoch's state when a crashed job left one), and save from rank 0 through
:func:`dataengine.vision.save_checkpoint` with the run's arguments inside the checkpoint. Multi-node:
the same module under torchrun's rendezvous options.
The object store's options (credentials) come from ``DATAENGINE_STORAGE_OPTIONS`` (JSON), never argv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dataengine.errors import DataEngineError, EmptyDatasetError, ModelError
from dataengine.storage import ObjectStore
from dataengine.training.dataset import ClipFrameDataset, collate
from dataengine.training.distributed import (
    STORAGE_OPTIONS_ENV,
    DistributedInfo,
    barrier,
    check_ranks_agree,
    init_distributed,
    shutdown,
    weights_digest,
)
from dataengine.training.engine import train_one_epoch
from dataengine.training.epoch_line import epoch_line
from dataengine.training.record import FitResult, TrainingRecord
from dataengine.training.resume import Trainables, load_state, save_state
from dataengine.training.sampling import ShuffledShardSampler
from dataengine.vision import build_detector, load_checkpoint, model_prefix, save_checkpoint


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The run's arguments; every one of them is stored inside the checkpoint."""
    parser = argparse.ArgumentParser(prog="dataengine.training.ddp", description=__doc__)
    parser.add_argument("--store-url", required=True, help="object store root, e.g. file:///data/store")
    parser.add_argument("--manifest", required=True, help="URI of the dataset manifest.jsonl")
    parser.add_argument("--dataset-id", default="", help="lineage id of the dataset, recorded in the model")
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--arch", default="tiny_fasterrcnn")
    parser.add_argument(
        "--init-model-id", default="", help="start from this stored model's weights (warm start)"
    )
    parser.add_argument(
        "--warm-start",
        type=lambda text: text.lower() in ("1", "true", "yes"),
        default=False,
        help="recorded only: whether the launcher starts from the promoted model when there is one",
    )
    parser.add_argument("--classes", required=True, help="JSON list of class names")
    parser.add_argument("--min-size", type=int, default=240)
    parser.add_argument("--max-size", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--warm-epochs", type=int, default=0, help="epochs when --init-model-id is given (0: --epochs)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="global batch, split over the ranks")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-iters", type=int, default=50)
    parser.add_argument("--max-grad-norm", type=float, default=10.0)
    parser.add_argument("--hflip", type=float, default=0.5, help="probability of a horizontal flip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--amp", choices=["auto", "on", "off"], default="auto", help="mixed precision (auto: on CUDA only)"
    )
    parser.add_argument("--print-every", type=int, default=20)
    args = parser.parse_args(argv)
    args.classes = json.loads(args.classes)
    return args


def build_loader(
    args: argparse.Namespace, store: ObjectStore, info: DistributedInfo
) -> tuple[DataLoader[Any], ShuffledShardSampler, ClipFrameDataset]:
    """The train split, each rank seeing its own shard of a new permutation of it every epoch."""
    dataset = ClipFrameDataset(
        store,
        args.manifest,
        split="train",
        classes=args.classes,
        hflip_prob=args.hflip,
        as_uint8=True,
        input_size=(args.min_size, args.max_size),
    )
    if len(dataset) == 0:
        raise EmptyDatasetError(f"{args.manifest}: the train split has no labelled frames")
    # Computed lazily, a chunk at a time: torch's samplers hold the whole epoch as Python ints (36 bytes
    # per frame in the process feeding the loader). One permutation per (seed, epoch), so a resumed job
    # sees the order an uninterrupted one would have.
    sampler = ShuffledShardSampler(len(dataset), seed=args.seed, rank=info.rank, world_size=info.world_size)
    per_rank = max(1, math.ceil(args.batch_size / info.world_size))
    loader = DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=args.workers,
        collate_fn=collate,
        persistent_workers=args.workers > 0,
    )
    return loader, sampler, dataset


def build_optimizer(
    model: nn.Module, args: argparse.Namespace, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and a per-step schedule: linear warm-up, then cosine decay to zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    warmup = max(1, min(int(args.warmup_iters), total_steps // 4))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.001 + (1 - 0.001) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warm_start(model: nn.Module, store: ObjectStore, args: argparse.Namespace) -> None:
    """Load the weights of ``args.init_model_id``; it must share the architecture and classes."""
    config, state_dict = load_checkpoint(store, args.init_model_id)
    if config["arch"] != args.arch or list(config["classes"]) != list(args.classes):
        raise ModelError(
            f"cannot warm-start from {args.init_model_id}: it is a {config['arch']} for {config['classes']}, "
            f"this run trains a {args.arch} for {args.classes}"
        )
    if config.get("label_map"):
        # An imported model with labels of its own (e.g. COCO's): transfer what fits, class by class.
        from dataengine.training.transfer import transfer_weights

        print(f"[dataengine.training] {transfer_weights(model, config, state_dict).summary()}", flush=True)
        return
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ModelError(
            f"cannot warm-start from {args.init_model_id}: its weights do not fit today's {args.arch} "
            f"(it was saved by an older layout of the architecture); set DATAENGINE_TRAIN_WARM_START=false "
            f"to train from scratch: {exc}"
        ) from exc


def build_model(
    args: argparse.Namespace, store: ObjectStore, info: DistributedInfo
) -> tuple[nn.Module, nn.Module]:
    """The model to train (DDP-wrapped with several ranks) and the plain model inside it, to save."""
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = build_detector(
        args.arch, num_classes=len(args.classes), min_size=args.min_size, max_size=args.max_size
    )
    if args.init_model_id:
        warm_start(model, store, args)
    model.to(info.device)
    if info.world_size == 1:
        return model, model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids), model


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, saved inside every checkpoint: every argument that shapes the weights."""
    skipped = ("store_url", "device", "print_every", "amp")
    return {k: v for k, v in vars(args).items() if k not in skipped}


def use_amp(args: argparse.Namespace, info: DistributedInfo) -> bool:
    """Mixed precision on CUDA (unless turned off); never on the CPU, where it would only be slower."""
    return info.device.type == "cuda" and args.amp != "off"


def fit(args: argparse.Namespace, store: ObjectStore, info: DistributedInfo) -> FitResult:
    """Build the model and train it, resuming from the last epoch's state if a previous job stored one."""
    loader, sampler, dataset = build_loader(args, store, info)
    model, model_without_ddp = build_model(args, store, info)
    n_epochs = args.warm_epochs if args.init_model_id and args.warm_epochs else args.epochs
    optimizer, scheduler = build_optimizer(model, args, total_steps=n_epochs * len(loader))
    amp = use_amp(args, info)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    config = run_config(args)
    parts = Trainables(model_without_ddp, optimizer, scheduler, scaler)
    state = load_state(store, args.model_id, config=config, parts=parts)
    resumed_from = state.next_epoch
    log(
        info,
        f"training {args.model_id}: {len(dataset)} frames of {dataset.n_clips} clips, {n_epochs} epochs"
        + (f", resuming at epoch {resumed_from}" if resumed_from else "")
        + (", AMP" if amp else ""),
    )
    for epoch in range(state.next_epoch, n_epochs):
        sampler.set_epoch(epoch)
        torch.manual_seed(args.seed + 1000 * epoch + info.rank)  # other flips per rank; the same on resume
        stats = train_one_epoch(
            model, optimizer, scheduler, loader, info=info, epoch=epoch,
            max_grad_norm=args.max_grad_norm, log=lambda m: log(info, m), scaler=scaler,
        )  # fmt: skip
        state.epochs.append({"epoch": epoch, **stats})
        state.next_epoch, state.train_seconds = epoch + 1, state.train_seconds + stats["seconds"]
        if info.is_main:
            save_state(store, args.model_id, config=config, parts=parts, state=state)
        barrier(info)
        log(info, epoch_line(epoch, n_epochs, stats["loss"], stats["seconds"]))
    record = TrainingRecord(
        model_id=args.model_id,
        dataset_id=args.dataset_id,
        manifest=args.manifest,
        world_size=info.world_size,
        backend=info.backend,
        device=str(info.device),
        amp=amp,
        n_train_frames=len(dataset),
        n_train_clips=dataset.n_clips,
        train_seconds=state.train_seconds,
        resumed_from_epoch=resumed_from,
        epochs=list(state.epochs),
    )
    return FitResult(model=model_without_ddp, record=record)


def save(args: argparse.Namespace, store: ObjectStore, result: FitResult) -> None:
    """Rank 0 writes the weights, ``config.json`` and, last, ``training.json`` (the completion mark)."""
    train_args = {k: v for k, v in vars(args).items() if k != "store_url"}
    save_checkpoint(
        store, args.model_id, model=result.model, arch=args.arch, classes=args.classes,
        min_size=args.min_size, max_size=args.max_size, train_args=train_args,
    )  # fmt: skip
    record = {**result.record.to_dict(), "args": train_args}
    store.write_json(f"{model_prefix(args.model_id)}/training.json", record)


def log(info: DistributedInfo, message: str) -> None:
    """Print from rank 0 only, flushed, so the launcher's log reads in order."""
    if info.is_main:
        print(f"[dataengine.training] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Train one model as one rank of a torchrun job; returns the process exit code."""
    args = parse_args(argv)
    info = init_distributed(args.device)
    try:
        store = ObjectStore(args.store_url, **json.loads(os.environ.get(STORAGE_OPTIONS_ENV) or "{}"))
        result = fit(args, store, info)
        digest = weights_digest(result.model)
        # Every rank says what it holds, so a multi-node job can be checked from each node's own log.
        print(
            f"[dataengine.training] rank {info.rank}/{info.world_size}: weights sha256 {digest}", flush=True
        )
        agreed = check_ranks_agree(digest, info)[0]
        if info.is_main:
            save(args, store, FitResult(result.model, result.record.with_digest(agreed)))
        barrier(info)
    except DataEngineError as exc:
        print(f"dataengine training failed on rank {info.rank}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
