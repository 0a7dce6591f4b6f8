"""COCO evaluation of a stored model on a split of a dataset version, with pycocotools.

The ground truth is built with :func:`dataengine.formats.coco.to_coco` from each clip's own annotation
file (sha256-checked against the manifest), restricted to the frames the manifest lists.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from dataengine.context import Context
from dataengine.errors import NotFoundError
from dataengine.formats import ClipAnnotations
from dataengine.formats.coco import to_coco, xyxy_to_xywh
from dataengine.lineage import Dataset
from dataengine.lineage.datasets import get_dataset
from dataengine.lineage.model_registry import get_model
from dataengine.storage import ObjectStore
from dataengine.training.dataset import ClipFrameDataset, collate, load_verified_annotations
from dataengine.training.engine import predict
from dataengine.training.manifest import (
    SPLITS,
    ManifestEntry,
    dataset_classes,
    read_manifest,
    resolve_dataset,
)
from dataengine.vision import load_detector

#: ``split`` value that evaluates every frame of the dataset.
ALL_SPLITS = "all"
#: ``split`` value that evaluates the dataset's fixed held-out set (its val split when it has none yet).
HELDOUT = "heldout"
EVAL_BATCH_SIZE = 8
_ZERO: dict[str, Any] = {"map": 0.0, "map50": 0.0, "map75": 0.0, "mar100": 0.0}


def ground_truth(
    store: ObjectStore, entries: Sequence[ManifestEntry], classes: Sequence[str]
) -> tuple[dict[str, Any], dict[tuple[str, int], int]]:
    """The COCO ground truth of ``entries`` and the image id of each (clip_id, frame_index)."""
    clips: list[ClipAnnotations] = []
    for entry in entries:
        annotations = load_verified_annotations(store, entry.uri, sha256=entry.sha256)
        listed = set(entry.frames)
        clips.append(replace(annotations, frames=[f for f in annotations.frames if f.index in listed]))
    gt = to_coco(clips, classes=classes)
    image_ids = {(image["clip_id"], image["frame_index"]): image["id"] for image in gt["images"]}
    return gt, image_ids


def coco_results(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    category_of_label: dict[int, int],
) -> list[dict[str, Any]]:
    """COCO detection results; ``category_of_label`` maps model labels to dataset category ids."""
    results = []
    for output, image_id in zip(outputs, image_ids, strict=True):
        for box, score, label in zip(
            output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist(), strict=True
        ):
            category = category_of_label.get(int(label))
            if category is not None:
                results.append(
                    {"image_id": image_id, "category_id": category, "bbox": xyxy_to_xywh(box), "score": score}
                )
    return results


def coco_map(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """mAP@[.5:.95], mAP@.5, mAP@.75, AR@100 and the AP@[.5:.95] of each class; 0.0 with nothing to match."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    if not gt["annotations"] or not results:
        return {**_ZERO, "per_class": dict.fromkeys(names.values(), 0.0)}
    # pycocotools prints its progress and summary table; keep library chatter out of our output.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(value)) for value in evaluator.stats]  # -1 means "no ground truth": count 0
    return {
        "map": stats[0],
        "map50": stats[1],
        "map75": stats[2],
        "mar100": stats[8],
        "per_class": _per_class_ap(evaluator, names),
    }


def _per_class_ap(evaluator: COCOeval, names: dict[int, str]) -> dict[str, float]:
    """AP@[.5:.95] per category: the mean precision over IoUs and recalls, all areas, 100 detections."""
    precision = evaluator.eval["precision"]  # [IoU, recall, category, area, max detections]
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        valid = values[values > -1]
        per_class[names[category_id]] = float(valid.mean()) if valid.size else 0.0
    return per_class


def _label_map(model_classes: Sequence[str], dataset_classes_: Sequence[str]) -> dict[int, int]:
    """Model label (class index + 1) → dataset category id, matched by class name."""
    category = {name: i + 1 for i, name in enumerate(dataset_classes_)}
    return {i + 1: category[name] for i, name in enumerate(model_classes) if name in category}


def _dataset_for(ctx: Context, model_id: str, dataset: str | None) -> Dataset:
    with ctx.db.session() as session:
        if dataset is None:
            own = get_model(session, model_id).dataset_id
            if own is not None:
                return get_dataset(session, *_split_id(own))
        return resolve_dataset(session, dataset)


def _split_id(dataset_id: str) -> tuple[str, int]:
    name, _, version = dataset_id.rpartition("@")
    return name, int(version)


def held_out_source(ctx: Context, row: Dataset) -> tuple[Dataset, str | None, str]:
    """Where a dataset version's held-out frames are: ``(dataset row, split, label)``.

    The fixed held-out set named by the version when it has one, else its val split, else all its frames.
    """
    heldout_id = (row.counts or {}).get("heldout")
    if heldout_id:
        with ctx.db.session() as session:
            return get_dataset(session, *_split_id(heldout_id)), None, heldout_id
    counts = row.counts or {}
    if counts.get("n_val_frames", counts.get("n_val", 0)):
        return row, "val", f"{row.id}:val"
    return row, None, f"{row.id}:all"


def _source(ctx: Context, row: Dataset, split: str) -> tuple[Dataset, str | None, str]:
    if split == HELDOUT:
        return held_out_source(ctx, row)
    return row, None if split == ALL_SPLITS else split, f"{row.id}:{split}"


def evaluate(
    ctx: Context, *, model_id: str, dataset: str | None = None, split: str = HELDOUT
) -> dict[str, Any]:
    """COCO box metrics of model ``model_id`` on ``split`` of a dataset version.

    ``split`` is ``heldout`` (the version's fixed held-out set), ``train``, ``val`` or ``all``.
    ``dataset`` is ``NAME@VERSION`` or ``NAME``; None means the dataset the model was trained on.
    Returns ``map`` (mAP@[.5:.95]), ``map50``, ``map75``, ``mar100``, ``per_class`` (AP per class name),
    ``n_images``, ``n_gt_boxes``, ``n_detections`` and ``held_out`` (what was scored, e.g.
    ``default-heldout@1``). An empty split or a model without detections scores 0.0.
    """
    if split not in (HELDOUT, *SPLITS, ALL_SPLITS):
        # A typo would otherwise select no frame and score the model 0.0 without a word.
        choices = ", ".join((HELDOUT, *SPLITS, ALL_SPLITS))
        raise NotFoundError(f"no split {split!r}: evaluate on one of {choices}")
    row = _dataset_for(ctx, model_id, dataset)
    classes = dataset_classes(row, ctx.settings.classes)
    source, wanted, label = _source(ctx, row, split)
    entries = [
        e for e in read_manifest(ctx.store, source.manifest_uri) if wanted is None or e.split == wanted
    ]
    gt, image_ids = ground_truth(ctx.store, entries, classes)
    frames = ClipFrameDataset(ctx.store, source.manifest_uri, split=wanted, classes=classes)
    detector = load_detector(ctx.store, model_id, device=ctx.settings.device)
    loader = DataLoader(frames, batch_size=EVAL_BATCH_SIZE, collate_fn=collate)
    outputs = predict(detector.model, loader, detector.device) if len(frames) else []
    ids = [image_ids[frames.sample(i)] for i in range(len(frames))]
    results = coco_results(outputs, ids, _label_map(detector.classes, classes))
    metrics = coco_map(gt, results)
    metrics.update(
        n_images=len(gt["images"]),
        n_gt_boxes=len(gt["annotations"]),
        n_detections=len(results),
        held_out=label,
    )
    return metrics
