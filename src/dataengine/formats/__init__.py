"""Clip annotation format v1 and converters."""

from dataengine.formats.annotations import (
    NO_LABELS,
    SCHEMA_ID,
    TRUSTED_SOURCES,
    Box,
    ClipAnnotations,
    Frame,
    Origin,
    Source,
    json_schema,
    sha256_hex,
    utc_now_iso,
    validate_document,
)
from dataengine.formats.io import (
    SavedAnnotation,
    annotation_key,
    list_versions,
    load_annotations,
    load_annotations_uri,
    next_version,
    orphan_version,
    save_annotations,
)

__all__ = [
    "NO_LABELS",
    "SCHEMA_ID",
    "TRUSTED_SOURCES",
    "Box",
    "ClipAnnotations",
    "Frame",
    "Origin",
    "SavedAnnotation",
    "Source",
    "annotation_key",
    "json_schema",
    "list_versions",
    "load_annotations",
    "load_annotations_uri",
    "next_version",
    "orphan_version",
    "save_annotations",
    "sha256_hex",
    "utc_now_iso",
    "validate_document",
]
