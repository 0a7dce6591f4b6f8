"""Autolabelling with hindsight: an ensemble of our detectors pre-labels selected clips; boxes are fused
(WBF), tracked offline and repaired with hindsight, and written as a new annotation version for people
to review (ARCHITECTURE §1, stage ``selected → autolabelled``; docs/autolabel.md)."""

from dataengine.autolabel.ensemble import FusionParams, fuse_frame
from dataengine.autolabel.hindsight import HindsightParams, apply_hindsight
from dataengine.autolabel.labelling import FrameSize, clean_detections, count_tracks
from dataengine.autolabel.members import EnsemblePlan, MemberQuality, plan_ensemble
from dataengine.autolabel.pipeline import PIPELINE, AutolabelParams, label_clip
from dataengine.autolabel.report import AutolabelReport
from dataengine.autolabel.run import LABELLABLE_STAGES, NO_MODEL_MESSAGE, autolabel
from dataengine.autolabel.tracks import TrackerParams, track_detections
from dataengine.vision.tracks import Track

__all__ = [
    "LABELLABLE_STAGES",
    "NO_MODEL_MESSAGE",
    "PIPELINE",
    "AutolabelParams",
    "AutolabelReport",
    "EnsemblePlan",
    "FrameSize",
    "FusionParams",
    "HindsightParams",
    "MemberQuality",
    "Track",
    "TrackerParams",
    "apply_hindsight",
    "autolabel",
    "clean_detections",
    "count_tracks",
    "fuse_frame",
    "label_clip",
    "plan_ensemble",
    "track_detections",
]
