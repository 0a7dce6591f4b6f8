"""A small, real engine state for the monitoring UI's tests: frames, meta, annotation files, lineage rows.

Written through the same functions the stages use (lineage, formats, clips), with the run ids that
Airflow tasks write, so every page has something true to show and to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataengine.clips import ClipMeta, clip_id_for, encode_jpeg, frame_key, frame_name, write_meta
from dataengine.context import Context
from dataengine.formats import Box, ClipAnnotations, Frame, Origin, save_annotations
from dataengine.lineage.annotations import record_annotation
from dataengine.lineage.clips import register_clip, set_stage
from dataengine.lineage.datasets import create_dataset
from dataengine.lineage.model_registry import register_model, set_model_status
from dataengine.lineage.triggers import record_trigger_score
from dataengine.lineage.videos import register_video

VIDEO_ID = "0123456789abcdef"
FPS, CLIP_FRAMES, SAMPLED, WIDTH, HEIGHT = 10.0, 20, (0, 5, 10, 15), 320, 180
INGEST_RUN = "ingest_daily/scheduled__2026-11-21T00:00:00+00:00/register_clips"
TRIGGER_RUN = "detect_triggers/asset_triggered__2026-11-21T01:00:00+00:00/score_and_select"
AUTOLABEL_RUN = "autolabel/asset_triggered__2026-11-21T02:00:00+00:00/autolabel[0]"
REVIEW_RUN = "review_import/scheduled__2026-11-21T03:00:00+00:00/import_reviews"
EXPORT_RUN = "review_export/asset_triggered__2026-11-21T02:30:00+00:00/export_reviews"
SCORES = {
    "uncertainty": (0.10, 0.85, 0.30, 0.95, 0.20, 0.60),
    "novelty": (0.05, 0.40, 0.70, 0.50, 0.15, 0.10),
}
BUDGET = 3


@dataclass
class Scene:
    """Ids of what :func:`build_scene` wrote."""

    clip_ids: list[str]
    selected: list[str]
    reviewed: str  # autolabelled (v1), reviewed (v2) and in a dataset
    autolabelled: str  # autolabelled (v1) only
    boxes: dict[str, int] = field(default_factory=dict)  # "v1"/"v2" -> boxes in the reviewed clip


def _frame(index: int) -> bytes:
    rgb = np.full((HEIGHT, WIDTH, 3), 40 + 5 * index, dtype=np.uint8)
    rgb[60:140, 40 + 4 * index : 100 + 4 * index] = (220, 60, 60)  # the "person" walking right
    return encode_jpeg(rgb)


def _write_clip(ctx: Context, clip_id: str, start_frame: int) -> None:
    for index in SAMPLED:
        ctx.store.write_bytes(frame_key(clip_id, index), _frame(index))
    write_meta(
        ctx.store,
        ClipMeta(
            clip_id=clip_id,
            video_id=VIDEO_ID,
            source_uri="landing/ward.mp4",
            start_frame=start_frame,
            end_frame=start_frame + CLIP_FRAMES,
            start_time=start_frame / FPS,
            end_time=(start_frame + CLIP_FRAMES) / FPS,
            fps=FPS,
            width=WIDTH,
            height=HEIGHT,
            sampled=list(SAMPLED),
        ),
    )


def _annotations(clip_id: str, version: int, source: str, human: bool) -> ClipAnnotations:
    frames = []
    for index in SAMPLED:
        x = 40.0 + 4 * index
        origin: Origin = "human" if human else ("interpolated" if index == 5 else "detector")
        boxes = [
            Box("person", (x, 60.0, x + 60, 140.0), track=1, score=None if human else 0.9, origin=origin)
        ]
        if not human and index == 10:  # a false positive the reviewer deletes
            boxes.append(Box("bed", (200.0, 20.0, 300.0, 80.0), track=2, score=0.41, origin="detector"))
        if human and index == 15:  # a wheelchair the model missed
            boxes.append(Box("wheelchair", (220.0, 100.0, 300.0, 170.0), track=3, origin="human"))
        frames.append(Frame(index=index, image=frame_name(index), width=WIDTH, height=HEIGHT, boxes=boxes))
    producer = {"models": ["m-0000000001"]} | ({"platform": "local", "reviewers": ["ann"]} if human else {})
    return ClipAnnotations(
        clip_id=clip_id,
        version=version,
        source=source,  # type: ignore[arg-type]
        classes=["person", "bed", "wheelchair"],
        frames=frames,
        parent_version=1 if human else None,
        producer=producer,
    )


def _label(ctx: Context, clip_id: str, version: int, *, human: bool) -> int:
    saved = save_annotations(
        ctx.store, _annotations(clip_id, version, "review" if human else "autolabel", human)
    )
    with ctx.db.session() as session:
        record_annotation(
            session,
            clip_id=clip_id,
            version=version,
            uri=saved.uri,
            sha256=saved.sha256,
            source="review" if human else "autolabel",
            parent_version=1 if human else None,
            producer=_annotations(clip_id, version, "", human).producer,
            n_frames=saved.n_frames,
            n_boxes=saved.n_boxes,
        )
        if human:
            details = {"version": 2, "parent_version": 1, "boxes_changed": 2, "platform": "local"}
            for stage, run in (("in_review", EXPORT_RUN), ("reviewed", REVIEW_RUN)):
                set_stage(session, clip_id, stage, run_id=run, actor="airflow", details=details)
        else:
            details = {"model_id": "m-0000000001", "version": 1, "n_boxes": saved.n_boxes, "n_tracks": 2}
            set_stage(
                session, clip_id, "autolabelled", run_id=AUTOLABEL_RUN, actor="airflow", details=details
            )
    return saved.n_boxes


def _scores(held_out: str, map_: float, **classes: tuple[float | None, int]) -> dict[str, Any]:
    per_class = {name: {"ap": ap, "ap50": ap, "support": n} for name, (ap, n) in classes.items()}
    boxes = sum(n for _, n in classes.values())
    return {
        "held_out": held_out, "map": map_, "map50": map_ + 0.31, "per_class": per_class, "n_gt_boxes": boxes,
    }  # fmt: skip


#: The second model: the current form, with both held-out sets and the gate's checks (it was refused).
SECOND_MODEL_METRICS: dict[str, Any] = {
    "eval": _scores("ward-heldout@1", 0.47, person=(0.61, 40), bed=(0.33, 12), wheelchair=(None, 0)),
    "held_out": "ward-heldout@1",
    "edge_eval": _scores("ward-edgecases@1", 0.35, person=(0.49, 20), wheelchair=(0.21, 14)),
    "edge_case": "ward-edgecases@1",
    "promoted_model_id": "m-0000000001",
    "promoted_edge_eval": _scores("ward-edgecases@1", 0.4, person=(0.3, 20), wheelchair=(0.5, 14)),
    "decision": "refused: 1 of 3 checks failed: wheelchair AP on ward-edgecases@1 (14 boxes): 0.210 "
    "against 0.500 of m-0000000001, fell 0.290, more than the tolerance 0.050; passed: ...",
    "gate": {
        "promoted": False,
        "checks": [
            {"name": "regression mAP on ward-heldout@1", "passed": True, "detail": "rose 0.060"},
            {"name": "wheelchair AP on ward-edgecases@1 (14 boxes)", "passed": False, "detail": "fell 0.290"},
        ],
    },
}


def _models(ctx: Context) -> None:
    with ctx.db.session() as session:
        register_model(
            session,
            model_id="m-0000000001",
            checkpoint_uri="models/m-0000000001/model.pt",
            dataset_id=None,
            parent_model_id=None,
            metrics={"eval": {"map": 0.41, "map50": 0.72, "per_class": {"person": 0.55, "bed": 0.27}}},
        )
        set_model_status(session, "m-0000000001", "promoted")
        create_dataset(
            session,
            name="ward",
            version=1,
            manifest_uri="datasets/ward/v0001/manifest.jsonl",
            manifest_sha256="0" * 64,
            counts={"clips": 1},
            members=[(clip_id_for(VIDEO_ID, 20), 2, "train")],
        )
        register_model(
            session,
            model_id="m-0000000002",
            checkpoint_uri="models/m-0000000002/model.pt",
            dataset_id="ward@1",
            parent_model_id="m-0000000001",
            metrics=SECOND_MODEL_METRICS,
        )


def build_scene(ctx: Context) -> Scene:
    """One video of six clips scored by two triggers, three selected, one of them reviewed; two models."""
    clip_ids = [clip_id_for(VIDEO_ID, i * CLIP_FRAMES) for i in range(6)]
    with ctx.db.session() as session:
        register_video(
            session,
            video_id=VIDEO_ID,
            uri="landing/ward.mp4",
            sha256=VIDEO_ID * 4,
            status="ingested",
            camera="ward-3",
            duration=12.0,
            fps=FPS,
            width=WIDTH,
            height=HEIGHT,
        )
    for i, clip_id in enumerate(clip_ids):
        _write_clip(ctx, clip_id, i * CLIP_FRAMES)
        with ctx.db.session() as session:
            register_clip(
                session,
                clip_id=clip_id,
                video_id=VIDEO_ID,
                start_frame=i * CLIP_FRAMES,
                end_frame=(i + 1) * CLIP_FRAMES,
                start_time=i * CLIP_FRAMES / FPS,
                n_frames=CLIP_FRAMES,
                uri=ctx.store.uri(f"clips/{clip_id}"),
                run_id=INGEST_RUN,
                actor="airflow",
            )
            scores = {name: values[i] for name, values in SCORES.items()}
            for name, score in scores.items():
                record_trigger_score(
                    session, clip_id=clip_id, trigger=name, score=score, frames=[5], run_id=TRIGGER_RUN
                )
            set_stage(
                session, clip_id, "scored", run_id=TRIGGER_RUN, actor="airflow", details={"scores": scores}
            )
    best = {cid: max(values[i] for values in SCORES.values()) for i, cid in enumerate(clip_ids)}
    ranked = sorted(clip_ids, key=lambda cid: -best[cid])
    with ctx.db.session() as session:
        for rank, clip_id in enumerate(ranked, start=1):
            details = {"score": best[clip_id], "rank": rank, "budget": BUDGET, "candidates": len(clip_ids)}
            stage = "selected" if rank <= BUDGET else "rejected"
            set_stage(session, clip_id, stage, run_id=TRIGGER_RUN, actor="airflow", details=details)
    selected = ranked[:BUDGET]
    scene = Scene(clip_ids=clip_ids, selected=selected, reviewed=selected[1], autolabelled=selected[0])
    scene.boxes["v1"] = _label(ctx, scene.reviewed, 1, human=False)
    _label(ctx, scene.autolabelled, 1, human=False)
    scene.boxes["v2"] = _label(ctx, scene.reviewed, 2, human=True)
    _models(ctx)
    with ctx.db.session() as session:
        set_stage(
            session,
            scene.reviewed,
            "in_dataset",
            run_id="one_click_train/manual__x/snapshot",
            actor="airflow",
            details={"dataset_id": "ward@1"},
        )
    return scene
