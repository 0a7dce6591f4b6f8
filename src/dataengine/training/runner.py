"""``train``: launch the DDP entry point under torchrun in a subprocess and register the model it saves.

DDP never runs inside the calling process (an Airflow worker, the CLI): the subprocess owns the process
group, its ranks and their memory, and a crash there surfaces here as :class:`TrainingError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from dataengine.context import Context
from dataengine.errors import EmptyDatasetError, RetryableLineageError, TrainingError
from dataengine.lineage import Dataset
from dataengine.lineage.model_registry import find_model, models_trained_on, promoted_model, register_model
from dataengine.progress import NO_PROGRESS, Progress
from dataengine.storage import ObjectStore
from dataengine.training.distributed import STORAGE_OPTIONS_ENV
from dataengine.training.epoch_line import parse_epoch_line
from dataengine.training.manifest import dataset_classes, resolve_dataset
from dataengine.training.multinode import Rendezvous, failure_hint, rendezvous_for
from dataengine.vision import backend_of, checkpoint_key, model_prefix, pick_device

logger = logging.getLogger(__name__)

#: Hyperparameters of the recipe that are not settings. They are part of the model id, so changing one
#: trains a new model instead of returning an old one.
RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "warmup_iters": 50,
    "max_grad_norm": 10.0,
    "hflip": 0.5,
    "workers": 0,
}
STDERR_TAIL_CHARS = 4000
#: Checkpoint backends whose weights training can start from (the others are inference-only).
TRAINABLE_BACKENDS = ("torchvision",)


@dataclass
class TrainResult:
    """A trained model. ``train_seconds`` is the wall time of the torchrun job, start-up included."""

    model_id: str
    dataset_id: str
    checkpoint_uri: str
    train_seconds: float
    n_train_frames: int
    created: bool


def warm_start_model(ctx: Context, *, arch: str, classes: list[str]) -> str:
    """The promoted model to start from, when warm starts are on and it fits; else ``""``."""
    if not ctx.settings.train_warm_start:
        return ""
    with ctx.db.session() as session:
        promoted = promoted_model(session)
    if promoted is None:
        return ""
    config_key = f"{model_prefix(promoted.id)}/config.json"
    if not ctx.store.exists(config_key):
        return ""
    config = ctx.store.read_json(config_key)
    backend = backend_of(config)
    if backend not in TRAINABLE_BACKENDS:
        # An open-vocabulary, HOG or mmdet model only pre-labels: its knowledge reaches the next model
        # through the labels reviewers corrected, never through its weights.
        logger.warning(
            "not warm-starting from the promoted %s: its %s model (backend %s) is inference-only, so %s "
            "trains from its initial weights",
            promoted.id, config.get("arch"), backend, arch,
        )  # fmt: skip
        return ""
    if config.get("arch") != arch or list(config.get("classes", [])) != classes:
        logger.warning(
            "not warm-starting from the promoted %s: it is a %s for %s, this run trains a %s for %s",
            promoted.id, config.get("arch"), config.get("classes"), arch, classes,
        )  # fmt: skip
        return ""
    return promoted.id


def training_args(ctx: Context, row: Dataset, *, nproc: int, epochs: int | None) -> dict[str, Any]:
    """Everything that decides the weights besides the data: settings, recipe, start point, world size."""
    settings = ctx.settings
    classes = dataset_classes(row, settings.classes)
    return {
        "arch": settings.detector_arch,
        "init_model_id": warm_start_model(ctx, arch=settings.detector_arch, classes=classes),
        "warm_start": settings.train_warm_start,
        "classes": classes,
        "min_size": settings.image_min_size,
        "max_size": settings.image_max_size,
        "epochs": epochs or settings.train_epochs,
        # A warm start needs fewer epochs for nearly the same mAP (docs/training.md, "Measured").
        "warm_epochs": epochs or min(settings.train_warm_epochs, settings.train_epochs),
        "batch_size": settings.train_batch_size,
        "lr": settings.train_lr,
        "seed": settings.train_seed,
        "nproc": nproc,
        **RECIPE,
    }


def _epochs_of(args: dict[str, Any]) -> int:
    """The epochs the job will run: a warm start runs ``warm_epochs`` (as ddp.py decides)."""
    return int(
        args["warm_epochs"] if args.get("init_model_id") and args.get("warm_epochs") else args["epochs"]
    )


def model_id_for(dataset_id: str, args: dict[str, Any]) -> str:
    """``m-`` and 10 hex digits of the hash of the dataset id and the training arguments."""
    text = json.dumps({"dataset_id": dataset_id, "args": args}, sort_keys=True)
    return "m-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def resolve_nproc(requested: int | None, default: int, *, device: str = "auto") -> int:
    """How many ranks to start: one per GPU at most on CUDA, as asked on the CPU."""
    nproc = requested or default
    if nproc < 1:
        raise TrainingError(f"nproc must be at least 1, got {nproc}")
    if pick_device(device).type == "cuda":
        nproc = min(nproc, torch.cuda.device_count())
    return nproc


def torchrun_command(
    args: dict[str, Any],
    *,
    store_url: str,
    manifest_uri: str,
    dataset_id: str,
    model_id: str,
    device: str = "auto",
    rdzv: Rendezvous | None = None,
) -> list[str]:
    """The torchrun command line for one training job (this node's share of it with ``rdzv``).

    ``device`` is not part of the model id.
    """
    launch = rdzv.torchrun_args() if rdzv is not None else ["--standalone"]
    command = [
        sys.executable, "-m", "torch.distributed.run", *launch,
        "--nproc_per_node", str(args["nproc"]), "-m", "dataengine.training.ddp",
        "--store-url", store_url, "--manifest", manifest_uri,
        "--dataset-id", dataset_id, "--model-id", model_id,
        "--classes", json.dumps(args["classes"]), "--device", device,
    ]  # fmt: skip
    for name, value in args.items():
        if name not in ("classes", "nproc"):
            command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def _child_env(ctx: Context, nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    env[STORAGE_OPTIONS_ENV] = json.dumps(ctx.settings.storage_options)
    env["PYTHONUNBUFFERED"] = "1"
    # Ranks share the cores: without this each rank would start one thread per core and thrash.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def run_torchrun(
    command: list[str],
    env: dict[str, str],
    *,
    what: str,
    rdzv: Rendezvous | None = None,
    progress: Progress = NO_PROGRESS,
) -> float:
    """Run the job, streaming its stdout to the log (and its epochs to ``progress``); returns its wall
    seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True) as proc:
            assert proc.stdout is not None
            finished = 0  # epochs done, counting those a resumed job did before
            for line in proc.stdout:
                logger.info("%s", line.rstrip())
                done = parse_epoch_line(line)
                if done is not None:
                    text = f"train epoch {done.epoch + 1}/{done.epochs}, loss {done.loss:.4f}"
                    progress.advance(done.epoch + 1 - finished, description=text)
                    finished = done.epoch + 1
            code = proc.wait()
        if code != 0:
            stderr.seek(0)
            text = stderr.read()
            hint = failure_hint(text, rdzv)
            tail = text[-STDERR_TAIL_CHARS:]
            if hint is not None:
                raise TrainingError(f"{what}: {hint}; end of torchrun's stderr:\n{tail}")
            raise TrainingError(f"{what}: torchrun exited with code {code}; end of its stderr:\n{tail}")
    return time.perf_counter() - started


def _existing(ctx: Context, model_id: str) -> dict[str, Any] | None:
    """The training record of a model whose checkpoint is complete in the store."""
    record_key = f"{model_prefix(model_id)}/training.json"
    if not (ctx.store.exists(checkpoint_key(model_id)) and ctx.store.exists(record_key)):
        return None
    record: dict[str, Any] = ctx.store.read_json(record_key)
    return record


def _register(ctx: Context, model_id: str, dataset_id: str, record: dict[str, Any]) -> None:
    with ctx.db.session() as session:
        if find_model(session, model_id) is not None:
            return
        promoted = promoted_model(session)
        register_model(
            session,
            model_id=model_id,
            checkpoint_uri=ctx.store.uri(checkpoint_key(model_id)),
            dataset_id=dataset_id,
            parent_model_id=promoted.id if promoted else None,
            metrics={"train": _train_summary(record), "config": _config(ctx.store, model_id)},
            status="candidate",
        )


def _config(store: ObjectStore, model_id: str) -> dict[str, Any]:
    """The model's ``config.json`` (architecture, classes, sizes and every training argument)."""
    config: dict[str, Any] = store.read_json(f"{model_prefix(model_id)}/config.json")
    return config


def _train_summary(record: dict[str, Any]) -> dict[str, Any]:
    last = record["epochs"][-1] if record.get("epochs") else {}
    return {
        "wall_seconds": round(float(record.get("wall_seconds", 0.0)), 2),
        "train_seconds": round(float(record.get("train_seconds", 0.0)), 2),
        "n_train_frames": int(record.get("n_train_frames", 0)),
        "world_size": int(record.get("world_size", 1)),
        "resumed_from_epoch": int(record.get("resumed_from_epoch", 0)),
        "final_loss": round(float(last.get("loss", float("nan"))), 4),
    }


# Keys that do not make two runs on one dataset different models: the start point follows whatever is
# promoted (so a rerun after a promotion would otherwise train again), and the world size is a speed knob.
_NOT_RECIPE = ("init_model_id", "nproc")
#: How long a run waits for another run training the same model before it gives up (a day: a waiting
#: run costs one idle database connection, and a training can take hours).
_TRAIN_WAIT_SECONDS = 24 * 3600.0


def _same_recipe_on(ctx: Context, dataset_id: str, args: dict[str, Any]) -> str | None:
    """A model already trained on ``dataset_id`` with the same recipe, whatever it started from."""
    wanted = {k: v for k, v in args.items() if k not in _NOT_RECIPE}
    with ctx.db.session() as session:
        candidates = models_trained_on(session, dataset_id)
    for model_id in candidates:
        record = _existing(ctx, model_id)
        stored = (record or {}).get("args", {})
        if all(stored.get(k) == v for k, v in wanted.items()):
            return model_id
    return None


def train(
    ctx: Context,
    *,
    dataset: str | None = None,
    nproc: int | None = None,
    epochs: int | None = None,
    node_rank: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> TrainResult:
    """Train a detector on a dataset version with DDP under torchrun; returns the registered model.

    ``dataset`` is ``NAME@VERSION``, ``NAME`` (its newest version) or None (the newest ``default``).
    The model id follows from the dataset id and the training arguments, so a rerun returns the model
    trained before (``created=False``) instead of training again, even when another model was promoted
    in between (a warm start would otherwise begin from it and count as a new recipe).

    With ``train_nnodes`` above 1 this call is one node of the job: node 0 (``node_rank``, default the
    ``train_node_rank`` setting) registers the model, the others only train and check it was stored.
    ``progress`` counts the epochs, each with its loss.
    """
    with ctx.db.session() as session:
        row = resolve_dataset(session, dataset)
    nproc = resolve_nproc(nproc, ctx.settings.train_nproc, device=ctx.settings.device)
    args = training_args(ctx, row, nproc=nproc, epochs=epochs)
    model_id = _same_recipe_on(ctx, row.id, args) or model_id_for(row.id, args)
    rdzv = rendezvous_for(ctx.settings, model_id, node_rank=node_rank)
    if rdzv is not None:  # every node of a multi-node job runs this at once: none may wait for another
        return _train_once(ctx, row, args, model_id, rdzv, progress)
    # Runs training the same model take turns: the second waits, then finds the model and returns it
    # (two at once each trained it, and the later one resumed from the earlier one's saved epochs).
    with ctx.db.lock(f"train/{model_id}", wait_seconds=_TRAIN_WAIT_SECONDS) as held:
        if not held:
            raise RetryableLineageError(
                f"another run has been training {model_id} on {row.id} for {_TRAIN_WAIT_SECONDS:.0f} s; "
                "run this again when it has ended"
            )
        return _train_once(ctx, row, args, model_id, None, progress)


def _train_once(
    ctx: Context,
    row: Dataset,
    args: dict[str, Any],
    model_id: str,
    rdzv: Rendezvous | None,
    progress: Progress,
) -> TrainResult:
    """Train ``model_id`` unless it exists, and register it (on node 0); see :func:`train`."""
    record = _existing(ctx, model_id)
    created = record is None
    if record is None:
        if not (row.counts or {}).get("n_train_frames", 1):
            raise EmptyDatasetError(f"dataset {row.id} has no labelled frames in its train split")
        command = torchrun_command(
            args, store_url=ctx.store.url, manifest_uri=row.manifest_uri, dataset_id=row.id,
            model_id=model_id, device=ctx.settings.device, rdzv=rdzv,
        )  # fmt: skip
        where = f" as node {rdzv.node_rank} of {rdzv.nnodes} at {rdzv.endpoint}" if rdzv else ""
        logger.info("training %s on %s with %d process(es)%s", model_id, row.id, args["nproc"], where)
        what = f"training {model_id} on {row.id}"
        progress.start(f"train {model_id}", _epochs_of(args))
        wall = run_torchrun(command, _child_env(ctx, args["nproc"]), what=what, rdzv=rdzv, progress=progress)
        if rdzv is not None and rdzv.node_rank != 0:
            return _joined(ctx, model_id, row.id, wall)
        record = _add_wall_seconds(ctx.store, model_id, wall)
    if rdzv is None or rdzv.node_rank == 0:
        _register(ctx, model_id, row.id, record)
    return _result(ctx, model_id, row.id, record, created=created)


def _result(
    ctx: Context, model_id: str, dataset_id: str, record: dict[str, Any], *, created: bool
) -> TrainResult:
    return TrainResult(
        model_id=model_id,
        dataset_id=dataset_id,
        checkpoint_uri=ctx.store.uri(checkpoint_key(model_id)),
        train_seconds=float(record.get("wall_seconds", record.get("train_seconds", 0.0))),
        n_train_frames=int(record.get("n_train_frames", 0)),
        created=created,
    )


def _joined(ctx: Context, model_id: str, dataset_id: str, wall: float) -> TrainResult:
    """A non-launching node's result: the job's rank 0 (on whichever node) must have stored the model."""
    uri = ctx.store.uri(checkpoint_key(model_id))
    if not ctx.store.exists(checkpoint_key(model_id)):
        raise TrainingError(
            f"training {model_id}: this node's part of the job ended, but {uri} does not exist: "
            "every node must use the same DATAENGINE_STORAGE_URL"
        )
    record = _existing(ctx, model_id) or {}
    return _result(ctx, model_id, dataset_id, {**record, "wall_seconds": wall}, created=True)


def _add_wall_seconds(store: ObjectStore, model_id: str, wall_seconds: float) -> dict[str, Any]:
    """Read back the job's training record and add the launcher's wall time to it."""
    key = f"{model_prefix(model_id)}/training.json"
    if not store.exists(key) or not store.exists(checkpoint_key(model_id)):
        raise TrainingError(f"training {model_id} exited cleanly but wrote no checkpoint at {store.uri(key)}")
    record: dict[str, Any] = store.read_json(key)
    record["wall_seconds"] = wall_seconds
    store.write_json(key, record)
    return record
