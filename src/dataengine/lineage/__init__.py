"""Lineage database: every clip's path through the loop, in SQLite or PostgreSQL.

This package is the only code that speaks SQL. Writes and lookups go through one module per aggregate
(``videos``, ``clips``, ``quarantine``, ``triggers``, ``annotations``, ``reviews``, ``datasets``,
``model_registry``), each a set of functions over an open :class:`Session` that the caller commits;
reports and pages read through ``lineage.views``. Other packages may hold and read the row objects
these functions return (re-exported here for type hints), but never build a query.
"""

from sqlalchemy.orm import Session

from dataengine.lineage.db import Database, open_database
from dataengine.lineage.models import (
    CLIP_STAGES,
    MODEL_STATUSES,
    AnnotationVersion,
    Clip,
    ClipEvent,
    Dataset,
    DatasetClip,
    Model,
    QuarantineItem,
    ReviewTask,
    TriggerScore,
    Video,
)

__all__ = [
    "CLIP_STAGES",
    "MODEL_STATUSES",
    "AnnotationVersion",
    "Clip",
    "ClipEvent",
    "Database",
    "Dataset",
    "DatasetClip",
    "Model",
    "QuarantineItem",
    "ReviewTask",
    "Session",
    "TriggerScore",
    "Video",
    "open_database",
]
