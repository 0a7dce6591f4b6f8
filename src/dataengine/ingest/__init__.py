"""Ingest: landing videos → clips (re-encoded ``clip.mp4``, sampled JPEG frames, ``meta.json``) in lineage.

See ``docs/ingest.md`` for what is written where and why an input is quarantined.
"""

from dataengine.ingest.discovery import FINAL_STATUSES, discover, landing_videos
from dataengine.ingest.pipeline import QUARANTINE_STAGE, ingest, quarantine_key
from dataengine.ingest.report import IngestReport, QuarantinedInput

__all__ = [
    "FINAL_STATUSES",
    "QUARANTINE_STAGE",
    "IngestReport",
    "QuarantinedInput",
    "discover",
    "ingest",
    "landing_videos",
    "quarantine_key",
]
