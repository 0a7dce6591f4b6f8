"""Ingest: landing videos → clips (``clip.mp4`` by stream copy or re-encode, sampled JPEG frames,
``meta.json``) registered in lineage.

See ``docs/ingest.md`` for what is written where and why an input is quarantined.
"""

from typing import TYPE_CHECKING

from dataengine.lazy import lazy_attributes

if TYPE_CHECKING:
    from dataengine.ingest.discovery import FINAL_STATUSES, discover, landing_videos
    from dataengine.ingest.pipeline import ingest
    from dataengine.ingest.record import QUARANTINE_STAGE, quarantine_key
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

# Loaded on first use: the CLI starts decoding (ingest/ahead.py) before the lineage database layer,
# which discovery and the pipeline import, is loaded.
__getattr__ = lazy_attributes(
    __name__,
    {
        "FINAL_STATUSES": "discovery",
        "discover": "discovery",
        "landing_videos": "discovery",
        "ingest": "pipeline",
        "QUARANTINE_STAGE": "record",
        "quarantine_key": "record",
        "IngestReport": "report",
        "QuarantinedInput": "report",
    },
)
