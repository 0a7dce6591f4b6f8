"""Seed labels for the demo's bootstrap: the synthetic ground truth of the first clips, as reviewed labels.

This stands in for the few hand-labelled clips a team starts from. Only synthetic videos have it.
"""

from __future__ import annotations

from dataengine.clips import frame_name, read_meta
from dataengine.context import Context
from dataengine.formats import ClipAnnotations, Frame, save_annotations
from dataengine.lineage.annotations import record_saved
from dataengine.lineage.clips import list_clips, set_stage
from dataengine.synthetic.reviewer import ground_truth_review
from dataengine.synthetic.video import load_ground_truth


def label_seed_from_ground_truth(ctx: Context) -> int:
    """Label every ingested seed clip with its synthetic ground truth (source ``synthetic``); returns boxes.

    This stands in for the few hand-labelled clips a team starts from. Only synthetic videos have it.
    """
    n_boxes = 0
    with ctx.db.session() as session:
        clip_ids = [c.id for c in list_clips(session, stage="ingested")]
    for clip_id in clip_ids:
        meta = read_meta(ctx.store, clip_id)
        skeleton = ClipAnnotations(
            clip_id=clip_id,
            version=1,
            source="synthetic",
            classes=list(ctx.settings.classes),
            frames=[
                Frame(index=i, image=frame_name(i), width=meta.width, height=meta.height)
                for i in meta.sampled
            ],
        )
        truth = ground_truth_review(
            load_ground_truth(ctx.store, meta.source_uri), skeleton, start_frame=meta.start_frame
        )
        labels = ClipAnnotations(
            clip_id=clip_id,
            version=1,
            source="synthetic",
            classes=skeleton.classes,
            producer={"renderer": "dataengine.synthetic", "ground_truth": truth.producer.get("ground_truth")},
            frames=[
                Frame(
                    index=f.index,
                    image=f.image,
                    width=f.width,
                    height=f.height,
                    boxes=[
                        type(b)(label=b.label, xyxy=b.xyxy, track=b.track, score=None, origin="synthetic")
                        for b in f.boxes
                    ],
                )
                for f in truth.frames
            ],
        )
        saved = save_annotations(ctx.store, labels)
        with ctx.db.session() as session:
            record_saved(session, saved, source="synthetic", parent_version=None, producer=labels.producer)
            set_stage(
                session,
                clip_id,
                "reviewed",
                run_id=ctx.run_id,
                actor=ctx.actor,
                details={"labels": "synthetic ground truth (seed)", "version": 1, "n_boxes": saved.n_boxes},
            )
        n_boxes += saved.n_boxes
    return n_boxes
