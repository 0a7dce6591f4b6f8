"""Lineage database: every clip's path through the loop, in SQLite or PostgreSQL."""

from dataengine.lineage.db import Database, open_database
from dataengine.lineage.models import CLIP_STAGES, MODEL_STATUSES

__all__ = ["CLIP_STAGES", "MODEL_STATUSES", "Database", "open_database"]
