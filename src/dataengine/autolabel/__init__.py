"""Autolabelling: the promoted detector pre-labels selected clips, with boxes tracked across frames, as a
new annotation version for people to review (ARCHITECTURE §1, stage ``selected → autolabelled``)."""

from dataengine.autolabel.labelling import FrameSize, clean_detections, count_tracks, label_frames
from dataengine.autolabel.run import LABELLABLE_STAGES, NO_MODEL_MESSAGE, AutolabelReport, autolabel
from dataengine.autolabel.tracking import IoUTracker, track_frames

__all__ = [
    "LABELLABLE_STAGES",
    "NO_MODEL_MESSAGE",
    "AutolabelReport",
    "FrameSize",
    "IoUTracker",
    "autolabel",
    "clean_detections",
    "count_tracks",
    "label_frames",
    "track_frames",
]
