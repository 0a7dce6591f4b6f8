"""Training: dataset snapshots, the per-clip Dataset, DDP training under torchrun, evaluation, promotion.

The names below load on first use, so a reader of the small result types (``training.metrics``, the
monitoring UI, the CLI's ``status``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataengine.lazy import lazy_attributes

if TYPE_CHECKING:
    from dataengine.training.comparison import CandidateComparison, PromotionDecision
    from dataengine.training.dataset import ClipFrameDataset, collate
    from dataengine.training.diff import DatasetDiff, diff_datasets
    from dataengine.training.evaluation import evaluate
    from dataengine.training.gate import GateCheck, GateRules
    from dataengine.training.manifest import DatasetRef, ManifestEntry, manifest_key, read_manifest
    from dataengine.training.metrics import ClassScore, Evaluation
    from dataengine.training.registry import evaluate_candidate, promote_if_better
    from dataengine.training.runner import TrainResult, model_id_for, train
    from dataengine.training.snapshot import build_dataset

_HOMES = {
    "CandidateComparison": "comparison",
    "PromotionDecision": "comparison",
    "ClipFrameDataset": "dataset",
    "collate": "dataset",
    "DatasetDiff": "diff",
    "diff_datasets": "diff",
    "evaluate": "evaluation",
    "GateCheck": "gate",
    "GateRules": "gate",
    "DatasetRef": "manifest",
    "ManifestEntry": "manifest",
    "manifest_key": "manifest",
    "read_manifest": "manifest",
    "ClassScore": "metrics",
    "Evaluation": "metrics",
    "evaluate_candidate": "registry",
    "promote_if_better": "registry",
    "TrainResult": "runner",
    "model_id_for": "runner",
    "train": "runner",
    "build_dataset": "snapshot",
}

__all__ = [
    "CandidateComparison",
    "ClassScore",
    "ClipFrameDataset",
    "DatasetDiff",
    "DatasetRef",
    "Evaluation",
    "GateCheck",
    "GateRules",
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


__getattr__ = lazy_attributes(__name__, _HOMES)
