"""The clip annotation format ``dataengine.clip-annotations/1``: types, validation and (de)serialisation."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, cast

from dataengine.errors import AnnotationValidationError

if TYPE_CHECKING:  # jsonschema takes 0.1-0.9 s to import: only invalid documents pay for it now.
    import jsonschema

logger = logging.getLogger(__name__)

SCHEMA_ID = "dataengine.clip-annotations/1"
Source = Literal["autolabel", "review", "import", "synthetic", "none"]
#: The source of the empty pre-labels of a clip sent to review with no model (label from scratch): version 0,
#: no boxes, never stored under ``annotations/`` (it is not a label).
NO_LABELS: Source = "none"
Origin = Literal["detector", "ensemble", "interpolated", "human", "synthetic"]
#: Sources whose labels a person (or, for synthetic data, the renderer) vouches for: training uses them.
TRUSTED_SOURCES: tuple[Source, ...] = ("review", "import", "synthetic")
_SCORED_ORIGINS = ("detector", "ensemble")
_UNSCORED_ORIGINS = ("human", "synthetic")


@dataclass(frozen=True, slots=True)
class Box:
    """One labelled box; ``xyxy`` is in absolute pixels of the frame image."""

    label: str
    xyxy: tuple[float, float, float, float]
    track: int | None = None
    score: float | None = None
    origin: Origin = "detector"

    @property
    def area(self) -> float:
        """Area in square pixels."""
        x1, y1, x2, y2 = self.xyxy
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the box."""
        return {
            "track": self.track,
            "label": self.label,
            "xyxy": [float(v) for v in self.xyxy],
            "score": None if self.score is None else float(self.score),
            "origin": self.origin,
        }


@dataclass(slots=True)
class Frame:
    """The labels of one frame; an empty ``boxes`` list is a labelled negative."""

    index: int
    image: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the frame."""
        return {
            "index": self.index,
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "boxes": [box.to_dict() for box in self.boxes],
        }


@dataclass(slots=True)
class ClipAnnotations:
    """One version of one clip's labels."""

    clip_id: str
    version: int
    source: Source
    classes: list[str]
    frames: list[Frame]
    parent_version: int | None = None
    producer: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: utc_now_iso())

    @property
    def n_boxes(self) -> int:
        """Number of boxes over all frames."""
        return sum(len(frame.boxes) for frame in self.frames)

    def frame(self, index: int) -> Frame | None:
        """The frame with clip frame number ``index``, if it is labelled."""
        for frame in self.frames:
            if frame.index == index:
                return frame
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, frames in index order."""
        return {
            "schema": SCHEMA_ID,
            "clip_id": self.clip_id,
            "version": self.version,
            "parent_version": self.parent_version,
            "source": self.source,
            "producer": self.producer,
            "classes": list(self.classes),
            "frames": [f.to_dict() for f in sorted(self.frames, key=lambda f: f.index)],
            "created_at": self.created_at,
        }

    def to_json_bytes(self) -> bytes:
        """Canonical serialisation: the same labels always give the same bytes."""
        return document_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Any, *, source_name: str = "<document>") -> ClipAnnotations:
        """Validate ``doc`` and build the typed form; raises :class:`AnnotationValidationError`."""
        validate_document(doc, source_name=source_name)
        frames = [
            Frame(
                index=f["index"],
                image=f["image"],
                width=f["width"],
                height=f["height"],
                boxes=[
                    Box(
                        label=b["label"],
                        xyxy=cast(tuple[float, float, float, float], tuple(float(v) for v in b["xyxy"])),
                        track=b["track"],
                        score=b["score"],
                        origin=b["origin"],
                    )
                    for b in f["boxes"]
                ],
            )
            for f in doc["frames"]
        ]
        return cls(
            clip_id=doc["clip_id"],
            version=doc["version"],
            parent_version=doc["parent_version"],
            source=doc["source"],
            producer=dict(doc["producer"]),
            classes=list(doc["classes"]),
            frames=frames,
            created_at=doc["created_at"],
        )

    @classmethod
    def from_json_bytes(cls, data: bytes, *, source_name: str = "<bytes>") -> ClipAnnotations:
        """Parse and validate a serialised document."""
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationValidationError(source_name, "$", f"not valid JSON: {exc}") from exc
        return cls.from_dict(doc, source_name=source_name)


def document_bytes(doc: dict[str, Any]) -> bytes:
    """The canonical bytes of a document (:meth:`ClipAnnotations.to_dict`'s form)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@functools.cache
def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``dataengine.clip-annotations/1``."""
    text = resources.files("dataengine.formats").joinpath("schemas/clip-annotations-1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    """jsonschema's validator of the schema: the reference, and the source of every error message."""
    import jsonschema

    return jsonschema.Draft202012Validator(
        json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _date_time_formats() -> dict[str, Callable[[str], bool]]:
    """fastjsonschema's ``date-time`` check: jsonschema's own when it has one.

    jsonschema checks ``date-time`` with rfc3339-validator (``validate_rfc3339(value.upper())``) when
    that package is installed, and not at all when it is not; fastjsonschema's own regex is then
    stricter than no check, which is all the compiled validator needs (see :func:`validate_document`).
    Taken from rfc3339-validator directly, not from jsonschema, so valid documents never import
    jsonschema.
    """
    try:
        from rfc3339_validator import validate_rfc3339
    except ImportError:
        return {}
    return {"date-time": lambda value: bool(validate_rfc3339(value.upper()))}


@functools.cache
def _compiled() -> Callable[[Any], Any] | None:
    """The same schema compiled to Python by fastjsonschema: 0.4 ms where jsonschema's
    validator takes 7-15 ms, on a 24-frame autolabel file (docs/performance.md, "Autolabel").

    None where fastjsonschema is not installed (an environment made before it was a dependency):
    jsonschema alone validates there, with the same verdicts at its old speed.
    """
    try:
        import fastjsonschema
    except ImportError:
        logger.warning("fastjsonschema is not installed: annotation files are validated by jsonschema alone")
        return None
    return fastjsonschema.compile(json_schema(), formats=_date_time_formats(), use_default=False)


def _holds_tuple(doc: Any) -> bool:
    """Whether a tuple sits anywhere in ``doc``: fastjsonschema takes a tuple for a JSON array,
    jsonschema does not."""
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, tuple):
            return True
    return False


def _schema_accepts(doc: Any) -> bool:
    """Whether the compiled validator accepts ``doc``; its acceptance implies jsonschema's."""
    compiled = _compiled()
    if compiled is None:
        return False
    import fastjsonschema  # imported by _compiled already

    try:
        compiled(doc)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return not _holds_tuple(doc)


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_document(doc: Any, *, source_name: str = "<document>") -> None:
    """Check ``doc`` against the JSON Schema and the rules it cannot express.

    Raises :class:`AnnotationValidationError` naming ``source_name`` and the first failing field.
    The compiled validator (fastjsonschema) accepts only documents jsonschema accepts too; whatever it
    rejects goes to jsonschema, which gives the verdict and the message. So the verdicts and messages
    are jsonschema's (``tests/unit/test_formats_validators.py``), at the compiled validator's speed for
    valid documents. fastjsonschema is stricter in a few corners (``$`` in a pattern does not match
    before a trailing newline, as in ECMA-262; ``date-time`` checked by its own regex when
    rfc3339-validator is missing), which is why its rejection is not final.
    """
    if not _schema_accepts(doc):
        errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), str(e.path)))
        if errors:
            first = errors[0]
            raise AnnotationValidationError(source_name, _json_path(first.absolute_path), first.message)
    _check_semantics(doc, source_name)


def _check_semantics(doc: dict[str, Any], source_name: str) -> None:
    if (doc["source"] == NO_LABELS) != (doc["version"] == 0):
        raise AnnotationValidationError(
            source_name, "$.version", "version 0 is the empty pre-labels of source 'none', and only that"
        )
    if doc["source"] == NO_LABELS and any(frame["boxes"] for frame in doc["frames"]):
        raise AnnotationValidationError(source_name, "$.frames", "source 'none' (no pre-labels) has no boxes")
    parent = doc["parent_version"]
    if parent is not None and parent >= doc["version"]:
        raise AnnotationValidationError(
            source_name, "$.parent_version", f"{parent} is not older than version {doc['version']}"
        )
    classes = set(doc["classes"])
    seen: set[int] = set()
    for i, frame in enumerate(doc["frames"]):
        if frame["index"] in seen:
            raise AnnotationValidationError(
                source_name, f"$.frames[{i}].index", f"frame {frame['index']} is listed twice"
            )
        seen.add(frame["index"])
        for j, box in enumerate(frame["boxes"]):
            _check_box(box, frame, classes, f"$.frames[{i}].boxes[{j}]", source_name)


def _check_box(
    box: dict[str, Any], frame: dict[str, Any], classes: set[str], where: str, source_name: str
) -> None:
    if box["label"] not in classes:
        raise AnnotationValidationError(
            source_name,
            f"{where}.label",
            f"{box['label']!r} is not one of the classes {sorted(classes)}",
        )
    x1, y1, x2, y2 = box["xyxy"]
    width, height = frame["width"], frame["height"]
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise AnnotationValidationError(source_name, f"{where}.xyxy", f"{box['xyxy']} is not finite")
    if not (x1 < x2 and y1 < y2):
        raise AnnotationValidationError(
            source_name,
            f"{where}.xyxy",
            f"{box['xyxy']} is empty or inverted: need x1 < x2 and y1 < y2",
        )
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise AnnotationValidationError(
            source_name,
            f"{where}.xyxy",
            f"{box['xyxy']} lies outside the {width}x{height} frame",
        )
    origin, score = box["origin"], box["score"]
    if origin in _SCORED_ORIGINS and score is None:
        raise AnnotationValidationError(source_name, f"{where}.score", f"a {origin} box needs a score")
    if origin in _UNSCORED_ORIGINS and score is not None:
        raise AnnotationValidationError(
            source_name, f"{where}.score", f"a {origin} box has score null, got {score}"
        )
