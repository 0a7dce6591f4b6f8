"""Training: dataset snapshots, the per-clip Dataset, DDP training under torchrun, evaluation, promotion."""

from dataengine.training.dataset import ClipFrameDataset, collate
from dataengine.training.evaluation import evaluate
from dataengine.training.manifest import DatasetRef, ManifestEntry, build_dataset, manifest_key, read_manifest
from dataengine.training.registry import PromotionDecision, promote_if_better
from dataengine.training.runner import TrainResult, model_id_for, train

__all__ = [
    "ClipFrameDataset",
    "DatasetRef",
    "ManifestEntry",
    "PromotionDecision",
    "TrainResult",
    "build_dataset",
    "collate",
    "evaluate",
    "manifest_key",
    "model_id_for",
    "promote_if_better",
    "read_manifest",
    "train",
]
