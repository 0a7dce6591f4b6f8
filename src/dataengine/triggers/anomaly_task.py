"""``train_anomaly``: (re)train the anomaly autoencoder on the most recently ingested clips.

Scheduled by the ``retrain_anomaly`` DAG and runnable as ``dataengine triggers train-anomaly``. The
model id comes from the clips it learns from, so a rerun on the same clips reuses the stored model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from dataengine.context import Context
from dataengine.errors import InputRejectedError
from dataengine.lineage.clips import recently_ingested
from dataengine.triggers.anomaly import (
    CURRENT_KEY,
    anomaly_model_id,
    current_anomaly_id,
    save_anomaly_model,
    train_autoencoder,
)
from dataengine.triggers.base import ClipFrames
from dataengine.triggers.run import load_clip_frames

logger = logging.getLogger(__name__)
SEED = 0


@dataclass
class AnomalyTrainReport:
    """What a retrain did: the model now current, whether it was trained now, and on how many clips."""

    model_id: str | None
    trained: bool
    n_clips: int
    n_frames: int
    reason: str
    unreadable: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``--json`` output and XCom)."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary."""
        return f"anomaly model {self.model_id or '(none)'}: {self.reason}"


def recent_clip_ids(ctx: Context, limit: int) -> list[str]:
    """Up to ``limit`` clips, most recently ingested first, that are not quarantined."""
    with ctx.db.session() as session:
        return recently_ingested(session, limit)


def train_anomaly(
    ctx: Context, *, n_clips: int | None = None, epochs: int | None = None
) -> AnomalyTrainReport:
    """Train the autoencoder on the ``n_clips`` most recent clips and make it the current one.

    Nothing to learn from (no clips) is not an error: the report says so and nothing changes. Clips
    whose frames cannot be read are left out and listed.
    """
    limit = n_clips or ctx.settings.anomaly_train_clips
    epochs = epochs or ctx.settings.anomaly_epochs
    clips: list[ClipFrames] = []
    unreadable: list[str] = []
    for clip_id in recent_clip_ids(ctx, limit):
        try:
            clips.append(load_clip_frames(ctx.store, clip_id))
        except InputRejectedError as exc:
            logger.warning("anomaly training leaves out clip %s: %s", clip_id, exc)
            unreadable.append(clip_id)
    current = current_anomaly_id(ctx.store)
    if not clips:
        return AnomalyTrainReport(current, False, 0, 0, "no clips to train on; nothing changed", unreadable)
    n_frames = sum(len(c.frames) for c in clips)
    wanted = anomaly_model_id([c.clip_id for c in clips], epochs=epochs, seed=SEED)
    if ctx.store.exists(f"models/{wanted}/model.pt"):
        if current != wanted:
            ctx.store.write_json(CURRENT_KEY, {"model_id": wanted})
        return AnomalyTrainReport(
            wanted, False, len(clips), n_frames, "already trained on these clips", unreadable
        )
    model = train_autoencoder(clips, epochs=epochs, seed=SEED)
    save_anomaly_model(ctx.store, model)
    reason = f"trained on {len(clips)} clip(s), {n_frames} frame(s), {epochs} epoch(s)"
    logger.info("anomaly model %s %s", model.model_id, reason)
    return AnomalyTrainReport(model.model_id, True, len(clips), n_frames, reason, unreadable)
