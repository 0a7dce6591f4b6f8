"""Open-vocabulary detectors from Hugging Face ``transformers`` (OWLv2, Grounding DINO), prompted with text.

They find classes no trained model knows yet ("wheelchair") from their names alone. The model is read
from a local folder written by ``save_pretrained`` (nothing is downloaded: docs/models.md says how to
fetch the real weights on a machine with internet). The detector's labels index its prompts; a
:class:`~dataengine.vision.class_map.LabelMap` turns prompts into our classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from dataengine.errors import ModelError
from dataengine.vision.inference import Detections, predict_in_batches

#: ``--arch`` names and the ``model_type`` each expects in the folder's ``config.json``.
OPEN_VOCAB_ARCHS = {"owlv2": "owlv2", "grounding_dino": "grounding-dino"}
#: Detections under this score are dropped before they leave the model (thousands of queries otherwise).
MIN_SCORE = 0.01
MAX_DETECTIONS = 100


def load_open_vocab(folder: Path, *, arch: str, device: torch.device) -> tuple[Any, Any]:
    """The ``(model, processor)`` saved in ``folder``, from local files only."""
    if arch not in OPEN_VOCAB_ARCHS:
        raise ModelError(
            f"unknown open-vocabulary arch {arch!r}; choose one of {', '.join(OPEN_VOCAB_ARCHS)}"
        )
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder} is not a model folder written by save_pretrained (it has no config.json); "
            "see docs/models.md, 'Open-vocabulary pre-labels', for how to fetch one"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub, even for a missing file
    try:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        from transformers.utils import logging as hf_logging

        # Its per-load progress bar would land in every CLI command's and task log's output.
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        model = AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True)
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)  # type: ignore[no-untyped-call]
    except ImportError as exc:
        raise ModelError("open-vocabulary detectors need `transformers`: pip install transformers") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{folder}: cannot load a {arch} model and processor from it: {exc}") from exc
    model_type = str(getattr(model.config, "model_type", ""))
    if model_type != OPEN_VOCAB_ARCHS[arch]:
        raise ModelError(f"{folder} holds a {model_type!r} model, not {arch}; check --arch")
    return model.to(device).eval(), processor


class OpenVocabDetector:
    """An OWLv2 or Grounding DINO model behind the ``FrameDetector`` interface; labels index ``prompts``."""

    def __init__(
        self, model: Any, processor: Any, *, arch: str, prompts: Sequence[str], model_id: str
    ) -> None:
        if not prompts:
            raise ModelError(f"model {model_id}: an open-vocabulary detector needs at least one prompt")
        self.model = model
        self.processor = processor
        self.arch = arch
        self.classes = list(prompts)
        self.model_id = model_id
        self.device: torch.device = next(model.parameters()).device

    def __repr__(self) -> str:
        return f"OpenVocabDetector({self.model_id!r}, {self.arch}, prompts={self.classes})"

    @torch.inference_mode()
    def predict_batch(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Detections of one batch of RGB frames; boxes in frame pixels, labels index the prompts."""
        if not frames:
            return []
        if self.arch == "owlv2":
            return self._owlv2(frames)
        return self._grounding_dino(frames)

    def _owlv2(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        inputs = self.processor(
            text=[self.classes] * len(frames), images=list(frames), return_tensors="pt",
            padding="max_length", truncation=True,
        )  # fmt: skip
        outputs = self.model(**inputs.to(self.device))
        # OWLv2 pads each image to a square at the bottom and right: boxes are relative to that square.
        sides = [(max(f.shape[:2]), max(f.shape[:2])) for f in frames]
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=MIN_SCORE, target_sizes=sides
        )
        return [
            _detections(r["boxes"], r["scores"], r["labels"], frame)
            for r, frame in zip(results, frames, strict=True)
        ]

    def _grounding_dino(self, frames: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        text = " ".join(f"{prompt}." for prompt in self.classes)
        inputs = self.processor(images=list(frames), text=[text] * len(frames), return_tensors="pt")
        outputs = self.model(**inputs.to(self.device))
        token_prompt = _token_prompts(self.processor, text, len(self.classes))
        # Each query's score for a prompt is its best token of that prompt (sigmoid of the logits).
        logits = outputs.logits.sigmoid()[:, :, : token_prompt.shape[0]].float().cpu()
        per_prompt = torch.full((*logits.shape[:2], len(self.classes)), 0.0)
        for k in range(len(self.classes)):
            tokens = torch.from_numpy(np.flatnonzero(token_prompt == k))
            if tokens.numel():
                per_prompt[:, :, k] = logits[:, :, tokens].max(dim=-1).values
        scores, labels = per_prompt.max(dim=-1)
        boxes = _cxcywh_to_xyxy(outputs.pred_boxes.float().cpu())
        detections = []
        for i, frame in enumerate(frames):
            height, width = frame.shape[:2]
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            detections.append(_detections(boxes[i] * scale, scores[i], labels[i], frame))
        return detections

    def predict(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 8, score_threshold: float = 0.0
    ) -> list[Detections]:
        """Detections for each RGB frame, in order; labels index the prompts."""
        return predict_in_batches(self, frames, batch_size=batch_size, score_threshold=score_threshold)


def _token_prompts(processor: Any, text: str, n_prompts: int) -> NDArray[np.int64]:
    """For each token of ``text``, the index of the prompt it belongs to (-1: separators, specials)."""
    encoded = processor.tokenizer(text, return_offsets_mapping=True)
    bounds, start = [], 0
    for prompt_end in (i for i, char in enumerate(text) if char == "."):
        bounds.append((start, prompt_end))
        start = prompt_end + 2
    owner = np.full(len(encoded["input_ids"]), -1, dtype=np.int64)
    for t, (first, last) in enumerate(encoded["offset_mapping"]):
        for k, (lo, hi) in enumerate(bounds[:n_prompts]):
            if last > first and lo <= first and last <= hi:
                owner[t] = k
    return owner


def _cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _detections(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, frame: NDArray[np.uint8]
) -> Detections:
    """The best ``MAX_DETECTIONS`` over ``MIN_SCORE``, clipped to the frame, without empty boxes."""
    height, width = frame.shape[:2]
    xyxy = boxes.float().cpu().numpy().reshape(-1, 4).copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
    score = scores.float().cpu().numpy().reshape(-1)
    keep = (score >= MIN_SCORE) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    order = np.flatnonzero(keep)[np.argsort(-score[keep], kind="stable")][:MAX_DETECTIONS]
    return Detections(
        boxes_xyxy=xyxy[order].astype(np.float32),
        scores=score[order].astype(np.float32),
        labels=labels.cpu().numpy().reshape(-1)[order].astype(np.int64),
    )
