"""The anomaly trigger's model: a small convolutional autoencoder trained on recent frames.

Frames it reconstructs badly look unlike what the cameras usually show. A clip's error is its worst
frame's mean squared reconstruction error; its score is that error's percentile among the errors of
held-out reference clips measured right after training, so 0.5 is a typical clip and 1 is beyond all.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from numpy.typing import NDArray
from torch import nn

from dataengine.errors import ModelError, StorageError
from dataengine.storage import ObjectStore
from dataengine.triggers.base import ClipFrames, TriggerResult
from dataengine.triggers.pixels import thumbnails_into

ANOMALY_FORMAT = "dataengine.anomaly-autoencoder/1"
#: The pointer to the anomaly model the triggers use: ``{"model_id": ...}``.
CURRENT_KEY = "models/anomaly/current.json"
#: Thumbnail size (height, width) the autoencoder sees: global appearance, not detail, and cheap.
THUMBNAIL = (24, 32)
#: Frames whose error reaches this percentile of the reference are the ones the trigger names.
FIRE_PERCENTILE = 95.0


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside: for a model this small, a second thread only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thumbnails(frames: Sequence[NDArray[np.uint8]]) -> torch.Tensor:
    """RGB frames as a float (T, 3, 24, 32) tensor in [0, 1], by area averaging.

    Frames are first subsampled by the largest integer stride that keeps them at least 24x32, so the
    cost does not grow with the camera's resolution.
    """
    if not frames:
        return torch.zeros((0, 3, *THUMBNAIL))
    height, width = frames[0].shape[:2]
    stride = max(1, min(height // THUMBNAIL[0], width // THUMBNAIL[1]))
    # Compiled: each frame's sampled pixels read once, straight into floats. The tensor stays in the
    # frames' channels-last memory order: the convolutions then take the path whose results do not
    # depend on the batch (test_anomaly_errors_do_not_depend_on_the_batch), and that is faster here.
    images = torch.from_numpy(thumbnails_into(frames, stride)).permute(0, 3, 1, 2)
    if tuple(images.shape[-2:]) == THUMBNAIL:
        return images  # already the thumbnail's size: pooling would copy it unchanged
    return F.adaptive_avg_pool2d(images, THUMBNAIL)


class ConvAutoencoder(nn.Module):
    """Three stride-2 convolutions down to a 16x3x4 code, and three (upsample, convolution) steps back.

    Nearest upsampling and a 3x3 convolution instead of transposed convolutions: the same capacity, and
    several times faster on a CPU.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1)]

        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            *up(2 * width, 2 * width),
            nn.ReLU(inplace=True),
            *up(2 * width, width),
            nn.ReLU(inplace=True),
            *up(width, 3),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``images`` (N, 3, 24, 32)."""
        out: torch.Tensor = self.decoder(self.encoder(images))
        return out


@dataclass
class AnomalyModel:
    """A trained autoencoder and the sorted clip errors of its reference clips."""

    model_id: str
    model: ConvAutoencoder
    reference_errors: NDArray[np.float64]
    trained_on: list[str]

    @torch.inference_mode()
    def frame_errors(
        self, frames: Sequence[NDArray[np.uint8]], *, batch_size: int = 1024
    ) -> NDArray[np.float64]:
        """Per-frame mean squared reconstruction error (the same to the last bit at any ``batch_size``;
        1,024 thumbnails take about 30 MB at the widest layer, and larger batches run faster)."""
        self.model.eval()
        with one_thread():
            images = thumbnails(frames)
            errors = [((self.model(c) - c) ** 2).mean(dim=(1, 2, 3)) for c in torch.split(images, batch_size)]
            return torch.cat(errors).double().numpy() if errors else np.zeros(0)

    def percentile(self, error: float) -> float:
        """The share of reference clip errors below ``error`` (ties count half), in [0, 1]."""
        ref = self.reference_errors
        if ref.size == 0:
            return 0.0
        below = np.searchsorted(ref, error, side="left")
        upto = np.searchsorted(ref, error, side="right")
        return float((below + upto) / 2.0 / ref.size)

    def score(self, clip: ClipFrames) -> TriggerResult:
        """The anomaly trigger's result on one clip."""
        return self.score_errors(clip, self.frame_errors(clip.frames))

    def score_many(self, clips: Sequence[ClipFrames]) -> dict[str, TriggerResult]:
        """:meth:`score` of many clips, with the frames of all of them in shared batches (much faster on
        a CPU than one small batch per clip)."""
        errors = self.frame_errors([frame for clip in clips for frame in clip.frames])
        cut, median = self._reference_summary()
        # score_errors for every clip at once: the same numbers, without a dozen numpy calls per clip.
        lengths = np.asarray([len(clip.frames) for clip in clips], dtype=np.int64)
        owner = np.repeat(np.arange(len(clips)), lengths)
        worst = np.zeros(len(clips))
        np.maximum.at(worst, owner, errors)
        ref = self.reference_errors
        if ref.size:
            below = np.searchsorted(ref, worst, side="left")
            upto = np.searchsorted(ref, worst, side="right")
            percentiles = ((below + upto) / 2.0 / ref.size).tolist()
        else:
            percentiles = [0.0] * len(clips)
        rounded = np.round(errors, 8).tolist()
        fires = (errors >= cut).tolist()
        worst_list = worst.tolist()
        results, start = {}, 0
        for c, clip in enumerate(clips):
            end = start + len(clip.frames)
            details: dict[str, Any] = {
                "anomaly_model_id": self.model_id,
                "clip_error": round(worst_list[c], 8),
                "reference_median": median,
                "frame_errors": rounded[start:end],
            }
            fired = [int(i) for i, hit in zip(clip.indices, fires[start:end], strict=True) if hit]
            score = percentiles[c] if end > start else 0.0
            results[clip.clip_id] = TriggerResult(score=score, frames=fired, details=details)
            start = end
        return results

    def _reference_summary(self) -> tuple[float, float | None]:
        """The error at :data:`FIRE_PERCENTILE` of the reference clips, and their median (None if none)."""
        ref = self.reference_errors
        if not ref.size:
            return np.inf, None
        return float(np.percentile(ref, FIRE_PERCENTILE)), round(float(np.median(ref)), 8)

    def score_errors(
        self,
        clip: ClipFrames,
        errors: NDArray[np.float64],
        *,
        reference: tuple[float, float | None] | None = None,
    ) -> TriggerResult:
        """The result on one clip whose per-frame errors are known; ``reference`` is
        :meth:`_reference_summary`, passed in when many clips are scored at once."""
        worst = float(errors.max(initial=0.0))
        cut, median = reference if reference is not None else self._reference_summary()
        fired = [int(i) for i, e in zip(clip.indices, errors.tolist(), strict=True) if e >= cut]
        details: dict[str, Any] = {
            "anomaly_model_id": self.model_id,
            "clip_error": round(worst, 8),
            "reference_median": median,
            "frame_errors": np.round(errors, 8).tolist(),
        }
        return TriggerResult(
            score=self.percentile(worst) if errors.size else 0.0, frames=fired, details=details
        )


def anomaly_model_id(clip_ids: Sequence[str], *, epochs: int, seed: int) -> str:
    """A deterministic id from what the model is trained on: the same clips give the same model."""
    digest = hashlib.sha256(f"{epochs}/{seed}/".encode() + "\n".join(sorted(clip_ids)).encode()).hexdigest()
    return f"anomaly-{digest[:12]}"


def train_autoencoder(
    clips: Sequence[ClipFrames],
    *,
    epochs: int = 8,
    seed: int = 0,
    holdout: float = 0.25,
    batch_size: int = 64,
) -> AnomalyModel:
    """Train on the frames of most clips; the held-out rest (every 4th clip) gives the reference errors."""
    if not clips:
        raise ModelError("the anomaly autoencoder needs at least one clip of frames to train on")
    torch.manual_seed(seed)
    step = max(2, round(1 / holdout)) if len(clips) > 1 else 0
    reference = [c for i, c in enumerate(clips) if step and i % step == step - 1]
    training = [c for c in clips if c not in reference] or list(clips)
    images = torch.cat([thumbnails(c.frames) for c in training])
    model = ConvAutoencoder()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.split(images[torch.randperm(len(images), generator=generator)], batch_size):
            optimiser.zero_grad()
            loss = F.mse_loss(model(batch), batch)
            torch.autograd.backward(loss)
            optimiser.step()
    ids = [c.clip_id for c in clips]
    trained = AnomalyModel(anomaly_model_id(ids, epochs=epochs, seed=seed), model, np.zeros(0), ids)
    errors = [float(trained.frame_errors(c.frames).max(initial=0.0)) for c in (reference or training)]
    trained.reference_errors = np.sort(np.asarray(errors, dtype=np.float64))
    return trained


def save_anomaly_model(store: ObjectStore, anomaly: AnomalyModel, *, make_current: bool = True) -> str:
    """Write ``models/{model_id}/model.pt`` and ``config.json``, and point :data:`CURRENT_KEY` at it."""
    config = {
        "format": ANOMALY_FORMAT,
        "model_id": anomaly.model_id,
        "thumbnail": list(THUMBNAIL),
        "reference_errors": anomaly.reference_errors.tolist(),
        "trained_on": anomaly.trained_on,
    }
    buffer = io.BytesIO()
    torch.save({"config": config, "state_dict": anomaly.model.state_dict()}, buffer)
    key = f"models/{anomaly.model_id}/model.pt"
    store.write_bytes(key, buffer.getvalue())
    store.write_json(f"models/{anomaly.model_id}/config.json", config)
    if make_current:
        store.write_json(CURRENT_KEY, {"model_id": anomaly.model_id})
    return store.uri(key)


def current_anomaly_id(store: ObjectStore) -> str | None:
    """The id of the anomaly model in use, or None when none was trained yet."""
    if not store.exists(CURRENT_KEY):
        return None
    try:
        return str(store.read_json(CURRENT_KEY)["model_id"])
    except (StorageError, KeyError, TypeError) as exc:
        raise ModelError(f"{store.uri(CURRENT_KEY)} names no anomaly model: {exc}") from exc


def load_anomaly_model(store: ObjectStore, model_id: str) -> AnomalyModel:
    """A stored anomaly model; an unreadable or foreign checkpoint is a :class:`ModelError`."""
    key = f"models/{model_id}/model.pt"
    try:
        data = store.read_bytes(key)
    except StorageError as exc:
        raise ModelError(f"anomaly model {model_id}: cannot read {store.uri(key)}: {exc}") from exc
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        config = payload["config"]
        if config.get("format") != ANOMALY_FORMAT:
            raise ValueError(f"format is {config.get('format')!r}, not {ANOMALY_FORMAT}")
        model = ConvAutoencoder()
        model.load_state_dict(payload["state_dict"])
    except Exception as exc:  # torch.load raises many kinds (pickle, zip, runtime) on foreign bytes
        raise ModelError(f"{store.uri(key)} is not a usable anomaly autoencoder: {exc}") from exc
    errors = np.sort(np.asarray(config["reference_errors"], dtype=np.float64))
    return AnomalyModel(model_id, model, errors, list(config.get("trained_on", [])))
