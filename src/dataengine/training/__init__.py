"""Training: dataset snapshots, the per-clip Dataset, DDP training under torchrun, evaluation, promotion."""

from dataengine.training.dataset import ClipFrameDataset, collate
from dataengine.training.diff import DatasetDiff, diff_datasets
from dataengine.training.evaluation import evaluate
from dataengine.training.manifest import DatasetRef, ManifestEntry, manifest_key, read_manifest
from dataengine.training.registry import PromotionDecision, evaluate_candidate, promote_if_better
from dataengine.training.runner import TrainResult, model_id_for, train
from dataengine.training.snapshot import build_dataset

__all__ = [
    "ClipFrameDataset",
    "DatasetDiff",
    "DatasetRef",
    "ManifestEntry",
    "PromotionDecision",
    "TrainResult",
    "build_dataset",
    "collate",
    "diff_datasets",
    "evaluate",
    "evaluate_candidate",
    "manifest_key",
    "model_id_for",
    "promote_if_better",
    "read_manifest",
    "train",
]
