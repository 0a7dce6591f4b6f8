"""COCO evaluation of a stored model on a split of a dataset version, with pycocotools.

The ground truth is built with :func:`dataengine.formats.coco.to_coco` from each clip's own annotation
file (sha256-checked against the manifest), restricted to the frames the manifest lists.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
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
from dataengine.training.metrics import ClassScore, Evaluation
from dataengine.vision import Detector, FrameDetector, load_any_detector

#: ``split`` value that evaluates every frame of the dataset.
ALL_SPLITS = "all"
#: ``split`` value that evaluates the dataset's fixed held-out set (its val split when it has none yet).
HELDOUT = "heldout"
#: ``split`` value that evaluates the dataset version's edge-case set (val clips selected by triggers).
EDGE_CASES = "edgecases"
SPLIT_CHOICES = (HELDOUT, EDGE_CASES, *SPLITS, ALL_SPLITS)
EVAL_BATCH_SIZE = 8


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


def input_size(model: nn.Module) -> tuple[int, int] | None:
    """A torchvision detector's ``(min_size, max_size)``; None when it resizes to a fixed size (SSD)."""
    transform = getattr(model, "transform", None)
    if transform is None or getattr(transform, "fixed_size", None) is not None:
        return None
    return int(min(transform.min_size)), int(transform.max_size)


def to_frame_pixels(output: dict[str, torch.Tensor], scale: tuple[float, float]) -> dict[str, torch.Tensor]:
    """A prediction on an image decoded at ``scale`` of its frame, with its boxes in the frame's pixels."""
    if scale == (1.0, 1.0):
        return output
    factors = torch.tensor([scale[0], scale[1], scale[0], scale[1]], dtype=output["boxes"].dtype)
    return {**output, "boxes": output["boxes"] / factors}


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


def coco_scores(
    gt: dict[str, Any], results: list[dict[str, Any]], *, held_out: str = "", model_id: str = ""
) -> Evaluation:
    """COCO box metrics of ``results`` against ``gt``, with each class's AP and support.

    A class without ground truth is unmeasured (AP None); with no ground truth at all the overall figures
    are None too. A class with ground truth but no detection scores 0.0: that is a measurement.
    """
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    support = Counter(int(a["category_id"]) for a in gt["annotations"])
    if not gt["annotations"] or not results:
        zero = 0.0 if gt["annotations"] else None
        overall: list[float | None] = [zero] * 12
        classes = tuple(
            ClassScore(name, support[k], *((0.0, 0.0) if support[k] else (None, None)))
            for k, name in names.items()
        )
    else:
        evaluator = _run_cocoeval(gt, results)
        # pycocotools says -1 for "no ground truth"; the overall figures average the classes with some.
        overall = [float(value) if value >= 0 else None for value in evaluator.stats]
        classes = tuple(
            ClassScore(names[k], support[k], *_class_ap(evaluator, i))
            for i, k in enumerate(evaluator.params.catIds)
        )
    return Evaluation(
        held_out=held_out, model_id=model_id, map=overall[0], map50=overall[1], map75=overall[2],
        mar100=overall[8], classes=classes, n_images=len(gt["images"]),
        n_gt_boxes=len(gt["annotations"]), n_detections=len(results),
    )  # fmt: skip


def coco_map(gt: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`coco_scores` as a plain dict (``map``, ``map50``, ``map75``, ``mar100``, ``per_class``...)."""
    return coco_scores(gt, results).to_dict()


def _run_cocoeval(gt: dict[str, Any], results: list[dict[str, Any]]) -> COCOeval:
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
    return evaluator


def _class_ap(evaluator: COCOeval, k: int) -> tuple[float | None, float | None]:
    """AP@[.5:.95] and AP@.5 of the k-th category: mean precision over recalls, all areas, 100 dets."""
    precision = evaluator.eval["precision"]  # [IoU, recall, category, area, max detections]

    def mean(values: Any) -> float | None:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else None

    return mean(precision[:, :, k, 0, -1]), mean(precision[0, :, k, 0, -1])


def predict_frames(detector: FrameDetector, loader: DataLoader[Any]) -> list[dict[str, torch.Tensor]]:
    """Raw detections (``boxes``, ``scores``, ``labels`` = class index + 1) of every ``uint8`` image."""
    outputs: list[dict[str, torch.Tensor]] = []
    for images, _ in loader:
        frames = [image.permute(1, 2, 0).numpy() for image in images]
        for found in detector.predict_batch(frames):
            outputs.append(
                {
                    "boxes": torch.from_numpy(found.boxes_xyxy),
                    "scores": torch.from_numpy(found.scores),
                    "labels": torch.from_numpy(found.labels + 1),
                }
            )
    return outputs


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


def edge_case_source(ctx: Context, row: Dataset) -> tuple[Dataset, str | None, str] | None:
    """Where a dataset version's edge-case set is (``(dataset row, None, label)``), or None without one."""
    edge_id = (row.counts or {}).get("edge_cases")
    if not edge_id:
        return None
    with ctx.db.session() as session:
        return get_dataset(session, *_split_id(edge_id)), None, str(edge_id)


def _source(ctx: Context, row: Dataset, split: str) -> tuple[Dataset, str | None, str]:
    if split == HELDOUT:
        return held_out_source(ctx, row)
    if split == EDGE_CASES:
        source = edge_case_source(ctx, row)
        if source is None:
            raise NotFoundError(
                f"dataset {row.id} has no edge-case set: none of its val clips came in through a trigger "
                "yet (docs/training.md, 'Two held-out sets')"
            )
        return source
    return row, None if split == ALL_SPLITS else split, f"{row.id}:{split}"


def evaluate(ctx: Context, *, model_id: str, dataset: str | None = None, split: str = HELDOUT) -> Evaluation:
    """COCO box metrics of model ``model_id`` on ``split`` of a dataset version, per class with support.

    ``split`` is ``heldout`` (the version's fixed regression set), ``edgecases`` (its edge-case set),
    ``train``, ``val`` or ``all``. ``dataset`` is ``NAME@VERSION`` or ``NAME``; None means the dataset the
    model was trained on. A class without ground truth there is reported unmeasured (n/a), not 0.0.
    """
    if split not in SPLIT_CHOICES:
        # A typo would otherwise select no frame and score the model without a word.
        raise NotFoundError(f"no split {split!r}: evaluate on one of {', '.join(SPLIT_CHOICES)}")
    row = _dataset_for(ctx, model_id, dataset)
    classes = dataset_classes(row, ctx.settings.classes)
    source, wanted, label = _source(ctx, row, split)
    entries = [
        e for e in read_manifest(ctx.store, source.manifest_uri) if wanted is None or e.split == wanted
    ]
    gt, image_ids = ground_truth(ctx.store, entries, classes)
    detector = load_any_detector(ctx.store, model_id, device=ctx.settings.device)
    if isinstance(detector, Detector):
        frames = ClipFrameDataset(
            ctx.store,
            source.manifest_uri,
            split=wanted,
            classes=classes,
            input_size=input_size(detector.model),
        )
        loader = DataLoader(frames, batch_size=EVAL_BATCH_SIZE, collate_fn=collate)
        outputs = predict(detector.model, loader, detector.device) if len(frames) else []
        outputs = [to_frame_pixels(output, frames.image_scale(i)) for i, output in enumerate(outputs)]
    else:
        # Any other backend (imported with a class map, open-vocabulary, HOG, mmdet) sees whole frames.
        frames = ClipFrameDataset(
            ctx.store, source.manifest_uri, split=wanted, classes=classes, as_uint8=True
        )
        loader = DataLoader(frames, batch_size=EVAL_BATCH_SIZE, collate_fn=collate)
        outputs = predict_frames(detector, loader) if len(frames) else []
    ids = [image_ids[frames.sample(i)] for i in range(len(frames))]
    results = coco_results(outputs, ids, _label_map(detector.classes, classes))
    return coco_scores(gt, results, held_out=label, model_id=model_id)
