"""``dataengine model import``: bring a detector a team already has, so the loop can start on day one.

The model is checked (:mod:`dataengine.vision.model_sources`), stored as our checkpoint under
``models/{model_id}/``, and registered in lineage with ``origin = imported`` and its source's sha256.
When no model is promoted yet it becomes the promoted one: there is no held-out set on day one, and the
decision says so. Later models must beat it on the held-out set like any promoted model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dataengine.context import Context
from dataengine.errors import ModelError, NotFoundError, StorageError
from dataengine.lineage import model_registry as registry
from dataengine.lineage.datasets import get_dataset
from dataengine.storage import ObjectStore
from dataengine.training.comparison import PromotionDecision
from dataengine.training.registry import metrics_key, promote_if_better
from dataengine.vision.checkpoints import files_prefix
from dataengine.vision.layout import CHECKPOINT_FORMAT, checkpoint_key, model_prefix
from dataengine.vision.model_sources import (
    HOG_ARCH,
    MMDET_ARCH,
    PreparedModel,
    import_archs,
    prepare_hog,
    prepare_mmdet,
    prepare_open_vocab,
    prepare_torchvision,
)
from dataengine.vision.open_vocab import OPEN_VOCAB_ARCHS
from dataengine.vision.torchvision_import import fetch_named_weights

logger = logging.getLogger(__name__)
_CHUNK = 1 << 20
#: The dataset whose held-out set judges a model imported while another one is promoted.
DEFAULT_DATASET = "default"
#: What an imported model promoted on day one was judged on: nothing.
NO_HELD_OUT = "none (imported on day one)"


@dataclass(frozen=True)
class ModelImportRequest:
    """What to import: ``weights`` (a path, a store key or URI) of ``arch``, and how its labels map."""

    arch: str
    weights: str | None = None
    classes: tuple[str, ...] = ()
    class_map: tuple[tuple[str, str], ...] = ()
    named_weights: str | None = None
    mmdet_config: str | None = None
    promote: bool = True
    min_size: int | None = None
    max_size: int | None = None


@dataclass(frozen=True)
class ModelImportReport:
    """The imported model: its id, where it came from, and whether it is the promoted model now."""

    model_id: str
    arch: str
    backend: str
    classes: list[str]
    class_map: dict[str, str]
    source_uri: str
    source_sha256: str
    created: bool
    status: str
    decision: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)

    def summary(self) -> str:
        """A few human lines; the model id is the last."""
        mapped = ", ".join(f"{k}->{v}" for k, v in self.class_map.items()) or "its own classes"
        state = "imported" if self.created else "already imported"
        return "\n".join(
            [
                f"{state} {self.arch} ({self.backend}) from {self.source_uri}",
                f"sha256 {self.source_sha256}; classes {', '.join(self.classes)}; labels {mapped}",
                f"{self.status}: {self.decision}",
                self.model_id,
            ]
        )


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_sha256(path: Path) -> str:
    """The sha256 of a file, or of a folder's sorted ``name sha256`` lines (a transformers folder)."""
    if path.is_file():
        return _sha256_file(path)
    lines = [f"{p.name} {_sha256_file(p)}\n" for p in sorted(path.iterdir()) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


@contextlib.contextmanager
def local_source(store: ObjectStore, raw: str) -> Iterator[tuple[Path | None, str]]:
    """``(local path, URI)`` of a file or folder given as a local path, a store key or a store URI."""
    if raw.startswith("file://"):
        raw = raw.removeprefix("file://")
    if "://" in raw and not raw.startswith(store.url + "/"):
        raise ModelError(f"{raw} is neither a local path nor inside the store {store.url}")
    if "://" not in raw and Path(raw).expanduser().exists():
        path = Path(raw).expanduser().resolve()
        yield path, f"file://{path}"
        return
    key = store.key_of(raw) if "://" in raw else raw.strip("/")
    try:
        keys = [key] if store.exists(key) else store.list(key + "/")
    except StorageError as exc:
        raise ModelError(f"{raw}: cannot read it: {exc}") from exc
    if not keys:
        raise ModelError(f"{raw}: no such file or folder, locally or in the store {store.url}")
    with tempfile.TemporaryDirectory(prefix="dataengine-import-") as tmp:
        if keys == [key]:
            target = Path(tmp) / key.rsplit("/", 1)[-1]
            store.get_file(key, target)
        else:
            target = Path(tmp) / "model"
            target.mkdir()
            for name in keys:
                store.get_file(name, target / name[len(key) + 1 :].replace("/", "_"))
        yield target, store.uri(key)


def _prepare(ctx: Context, request: ModelImportRequest, path: Path | None) -> PreparedModel:
    settings = ctx.settings
    classes = list(request.classes) or list(settings.classes)
    pairs = list(request.class_map)
    arch = request.arch
    if arch == HOG_ARCH:
        return prepare_hog(classes=classes, class_map=pairs)
    if arch == MMDET_ARCH:
        config = Path(request.mmdet_config) if request.mmdet_config else None
        return prepare_mmdet(path, mmdet_config=config, classes=classes, class_map=pairs)
    if path is None:
        raise ModelError(f"--arch {arch} needs WEIGHTS (a file or folder) or --weights NAME")
    if arch in OPEN_VOCAB_ARCHS:
        return prepare_open_vocab(path, arch=arch, classes=classes, class_map=pairs)
    if arch not in import_archs() and not arch.startswith("torchvision:"):
        raise ModelError(f"unknown --arch {arch!r}; choose one of {', '.join(import_archs())}")
    if path.is_dir():
        raise ModelError(f"{path} is a folder; a {arch} model is one state_dict file (.pth/.pt)")
    sizes = (request.min_size, request.max_size) if request.min_size and request.max_size else None
    fallback = (settings.image_min_size, settings.image_max_size)
    return prepare_torchvision(
        path, arch=arch, classes=classes, class_map=pairs, sizes=sizes, fallback_sizes=fallback
    )


def imported_model_id(sha256: str, prepared: PreparedModel) -> str:
    """``m-`` and 10 hex digits of the source's sha256 and how it is read, so a rerun finds the same."""
    config = {k: v for k, v in prepared.config.items() if k != "mmdet_config"}
    text = json.dumps({"sha256": sha256, "backend": prepared.backend, "config": config}, sort_keys=True)
    return "m-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _store(ctx: Context, model_id: str, prepared: PreparedModel, source: dict[str, str]) -> dict[str, Any]:
    """Write the model's files, then ``model.pt`` and ``config.json``; returns the config."""
    config: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "backend": prepared.backend,
        "model_id": model_id,
        **prepared.config,
        "origin": "imported",
        "source": source,
    }
    if prepared.files:
        config["files"] = sorted(prepared.files)
        for name, path in prepared.files.items():
            ctx.store.put_file(path, f"{files_prefix(model_id)}/{name}")
    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": prepared.state_dict}, buffer)
    ctx.store.write_bytes(checkpoint_key(model_id), buffer.getvalue())
    ctx.store.write_json(f"{model_prefix(model_id)}/config.json", config)
    return config


def _register(ctx: Context, model_id: str, config: dict[str, Any]) -> bool:
    """Register the model as an imported candidate; False when it was registered before."""
    source = config["source"]
    with ctx.db.session() as session:
        if registry.find_model(session, model_id) is not None:
            return False
        registry.register_model(
            session, model_id=model_id, checkpoint_uri=ctx.store.uri(checkpoint_key(model_id)),
            dataset_id=None, parent_model_id=None, status="candidate", origin="imported",
            source_uri=source["uri"], source_sha256=source["sha256"],
            metrics={"imported": source, "config": _public_config(config)},
        )  # fmt: skip
    return True


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("mmdet_config", "source")}


def _promote(ctx: Context, model_id: str) -> tuple[str, str]:
    """Promote the model when none is, else judge it on the newest dataset's held-out set."""
    with ctx.db.session() as session:
        current = registry.promoted_model(session)
        if current is None:
            reason = (
                "promoted: no model was promoted yet, and there is no held-out set on day one, so it was "
                "not evaluated; the next trained model must beat it on the held-out set"
            )
            decision = PromotionDecision(
                model_id=model_id, promoted=True, new_map=None, previous_model_id=None, previous_map=None,
                held_out=NO_HELD_OUT, reason=reason,
            )  # fmt: skip
            model = registry.get_model(session, model_id)
            metrics = {**model.metrics, "decision": reason, "held_out": NO_HELD_OUT}
            registry.set_model_status(session, model_id, "promoted", metrics=metrics)
            ctx.store.write_json(
                metrics_key(model_id), {"model_id": model_id, "decision": decision.to_dict()}
            )
            return "promoted", reason
        if current.id == model_id:
            return "promoted", "it is the promoted model"
        try:
            newest: str | None = get_dataset(session, DEFAULT_DATASET).id
        except NotFoundError:
            newest = None
    if newest is None:
        return "candidate", (
            f"{current.id} is promoted and there is no dataset yet to compare the two on; use it in the "
            "autolabel ensemble (DATAENGINE_AUTOLABEL_MODELS) or import it again after `dataset build`"
        )
    decision = promote_if_better(ctx, model_id=model_id, dataset_id=newest)
    return ("promoted" if decision.promoted else "rejected"), decision.reason


def import_model(ctx: Context, request: ModelImportRequest) -> ModelImportReport:
    """Check, store and register the model ``request`` names; promote it as :func:`_promote` says.

    A refused model (not a state dict, the wrong architecture, a class map naming an unknown class or
    label) raises :class:`ModelError` naming the file and the problem, and nothing is stored or
    registered. A rerun with the same file and options returns the same model id.
    """
    if request.named_weights and request.weights:
        raise ModelError("give WEIGHTS or --weights NAME, not both")
    source: contextlib.AbstractContextManager[tuple[Path | None, str]]
    if request.named_weights:
        named = fetch_named_weights(request.arch, request.named_weights)
        source = contextlib.nullcontext((named, f"file://{named}"))
    elif request.weights:
        source = local_source(ctx.store, request.weights)
    else:
        source = contextlib.nullcontext((None, "builtin:" + request.arch))
    with source as (path, uri):
        prepared = _prepare(ctx, request, path)
        sha = source_sha256(path) if path is not None else _builtin_sha(prepared)
        model_id = imported_model_id(sha, prepared)
        config = _store(ctx, model_id, prepared, {"uri": uri, "sha256": sha, "arch": request.arch})
    created = _register(ctx, model_id, config)
    status, decision = (
        _promote(ctx, model_id) if request.promote else ("candidate", "not promoted (--no-promote)")
    )
    source_names = config.get("source_classes") or config["classes"]
    class_map = {source_names[int(i)]: c for i, c in (config.get("label_map") or {}).items()}
    logger.info("imported model %s (%s) from %s: %s", model_id, request.arch, uri, decision)
    return ModelImportReport(
        model_id=model_id, arch=prepared.arch, backend=prepared.backend, classes=list(config["classes"]),
        class_map=class_map, source_uri=uri, source_sha256=sha, created=created, status=status,
        decision=decision,
    )  # fmt: skip


def _builtin_sha(prepared: PreparedModel) -> str:
    """A model with no file (OpenCV's built-in HOG SVM) is identified by its arch and parameters."""
    text = json.dumps({"builtin": prepared.arch, "config": prepared.config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
