"""The compiled validator (fastjsonschema) against jsonschema's: the same verdicts and messages.

``validate_document`` trusts the compiled validator only when it accepts; a rejection goes to jsonschema
for the verdict and the message. These tests hold it to that: on valid documents and on documents with
every kind of violation the schema names (generated from the schema itself), plus the corners where the
two libraries differ, and on random mutations, ``validate_document`` gives exactly what the jsonschema-only
``validate_document`` gave before (``_reference``), and the compiled validator never accepts a document
jsonschema rejects.
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from dataengine.errors import AnnotationValidationError
from dataengine.formats import Box, ClipAnnotations, Frame, json_schema, validate_document
from dataengine.formats.annotations import (
    _check_semantics,
    _compiled,
    _json_path,
    _schema_accepts,
    _validator,
)

# A dependency (pyproject.toml); an environment made before it was one validates with jsonschema alone.
fastjsonschema = pytest.importorskip("fastjsonschema")

CLIP = "3fa2c1d9e0b7a455-0000300"
CLASSES = ["person", "bed", "wheelchair"]


def _reference(doc: Any, *, source_name: str = "<document>") -> None:
    """``validate_document`` as it was before the compiled validator: jsonschema alone, then the rules."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), str(e.path)))
    if errors:
        first = errors[0]
        raise AnnotationValidationError(source_name, _json_path(first.absolute_path), first.message)
    _check_semantics(doc, source_name)


def _outcome(validate: Callable[..., None], doc: Any) -> tuple[str, str] | None:
    """None when ``validate`` accepts ``doc``, else the exception's type and text."""
    try:
        validate(copy.deepcopy(doc), source_name="s3://bucket/annotations/x/v0001.json")
    except Exception as exc:  # whatever the old code raised, the new must raise alike
        return type(exc).__name__, str(exc)
    return None


def _jsonschema_accepts(doc: Any) -> bool:
    return not any(True for _ in _validator().iter_errors(doc))


def _fast_accepts(doc: Any) -> bool:
    """The compiled validator's own verdict, before the tuple guard."""
    compiled = _compiled()
    assert compiled is not None
    try:
        compiled(copy.deepcopy(doc))
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _check_same(doc: Any) -> None:
    assert _outcome(validate_document, doc) == _outcome(_reference, doc)
    if _schema_accepts(doc):
        assert _jsonschema_accepts(doc), doc


def _base(source: str = "autolabel", *, n_frames: int = 3) -> dict[str, Any]:
    """A valid document in which every array the schema describes has at least one element."""
    scored = source == "autolabel"
    frames = []
    for i in range(n_frames):
        boxes = [
            Box(
                label="person",
                xyxy=(10.0 + i, 20.0, 50.5 + i, 90.0),
                track=1,
                score=0.9 if scored else None,
                origin="ensemble" if scored else "human",
            )
        ]
        if i == 1:
            boxes.append(
                Box("bed", (100, 100, 200, 150), track=None, score=0 if scored else None, origin="detector")
                if scored
                else Box("bed", (100, 100, 200, 150), track=2, origin="human")
            )
        frames.append(Frame(i * 5, f"frames/{i * 5:06d}.jpg", 320, 240, boxes))
    frames.append(Frame(n_frames * 5, "frames/x.jpg", 320, 240, []))
    return ClipAnnotations(
        clip_id=CLIP,
        version=2,
        parent_version=1,
        source=source,  # type: ignore[arg-type]
        producer={"models": ["m-1", "m-2"], "platform": "local", "reviewers": ["ann"], "params": {"x": [1]}},
        classes=CLASSES,
        frames=frames,
        created_at="2026-11-22T10:00:00Z",
    ).to_dict()


VALID = [
    _base(),
    _base("review"),
    _base("import", n_frames=1),
    _base("synthetic", n_frames=0),
    {**_base("autolabel"), "parent_version": None, "producer": {}},
    {**_base("none", n_frames=0), "version": 0, "parent_version": None},
    json.loads(json.dumps(_base())),
    # Corners both accept: integral floats are integers, a score may be 1, extra producer fields.
    {**_base(), "version": 2.0, "created_at": "2026-11-22t10:00:00.5+01:00"},
    {**_base(), "created_at": "2024-02-29T23:59:59z"},
    {**_base(), "producer": {"models": [], "platform": None, "anything": ["a", 1]}},
]


@pytest.mark.parametrize("doc", VALID, ids=lambda d: f"{d['source']}-{len(d['frames'])}")
def test_both_validators_accept_valid_documents(doc: dict[str, Any]) -> None:
    assert _jsonschema_accepts(doc)
    assert _fast_accepts(doc)
    assert _schema_accepts(doc)
    validate_document(doc)


def test_files_autolabel_writes_pass_the_compiled_validator() -> None:
    """The shape autolabel writes (many frames, rounded boxes, producer with params) takes the fast path."""
    frames = [
        Frame(
            i,
            f"frames/{i:06d}.jpg",
            320,
            240,
            [Box("person", (10.25 + j, 20.0, 50.0 + j, 60.5), track=j + 1, score=0.8123) for j in range(6)],
        )
        for i in range(24)
    ]
    doc = ClipAnnotations(
        CLIP,
        1,
        "autolabel",
        CLASSES,
        frames,
        producer={"models": ["a", "b"], "pipeline": "p", "params": {"weights": [1.0, 1.0]}},
    ).to_dict()
    assert _schema_accepts(doc)
    assert _jsonschema_accepts(doc)


# -- every kind of violation the schema names, generated from the schema ---------------------------------

_SAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "integer": 3,
    "number": 2.5,
    "string": "x",
    "array": [],
    "object": {},
}
_UNSET = object()
#: jsonschema checks ``date-time`` only when rfc3339-validator is installed (the airflow extra brings it).
_CHECKS_DATE_TIME = "date-time" in _validator().format_checker.checkers  # type: ignore[union-attr]


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _with(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the value at ``path`` replaced (``_UNSET``: removed)."""
    if not path:
        return copy.deepcopy(value)
    out = copy.deepcopy(doc)
    parent = _get(out, path[:-1])
    if value is _UNSET:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def _locations(
    schema: dict[str, Any], path: tuple[Any, ...]
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every place the schema describes, as (path in :func:`_base`'s document, sub-schema)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _locations(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from _locations(schema["items"], (*path, 0))


def _violations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what is wrong, document) for each keyword at each place of the schema."""
    for path, schema in _locations(json_schema(), ()):
        where = ".".join(str(p) for p in path) or "$"
        value = _get(doc, path)
        allowed = schema.get("type")
        allowed = [allowed] if isinstance(allowed, str) else allowed
        if allowed is not None:
            for name, sample in _SAMPLES.items():
                numeric = name == "integer" and "number" in allowed
                if name not in allowed and not numeric:
                    yield f"{where}: type {name}", _with(doc, path, sample)
        if "const" in schema:
            yield f"{where}: const", _with(doc, path, schema["const"] + "x")
        if "enum" in schema:
            yield f"{where}: enum", _with(doc, path, "nothing-of-the-sort")
            yield f"{where}: enum case", _with(doc, path, schema["enum"][0].upper())
        if "pattern" in schema:
            yield f"{where}: pattern", _with(doc, path, "zz")
            yield f"{where}: pattern, prefix", _with(doc, path, "x" + value)
            yield f"{where}: pattern, suffix", _with(doc, path, value + "0")
        if "minimum" in schema:
            yield f"{where}: minimum", _with(doc, path, schema["minimum"] - 1)
            yield f"{where}: minimum, float", _with(doc, path, schema["minimum"] - 0.5)
        if "maximum" in schema:
            yield f"{where}: maximum", _with(doc, path, schema["maximum"] + 0.5)
            yield f"{where}: maximum, inf", _with(doc, path, math.inf)
        if "minLength" in schema:
            yield f"{where}: minLength", _with(doc, path, "")
        if "minItems" in schema:
            yield f"{where}: minItems", _with(doc, path, value[: schema["minItems"] - 1])
        if "maxItems" in schema:
            yield f"{where}: maxItems", _with(doc, path, [*value, value[0]])
        if schema.get("uniqueItems"):
            yield f"{where}: uniqueItems", _with(doc, path, [*value, value[0]])
        if "items" in schema:
            yield f"{where}: items", _with(doc, path, [*value, {"no": "thing"}])
        for name in schema.get("required", []):
            yield f"{where}: required {name}", _with(doc, (*path, name), _UNSET)
        if schema.get("additionalProperties") is False:
            yield f"{where}: additionalProperties", _with(doc, (*path, "extra"), 1)
        if schema.get("format") == "date-time" and _CHECKS_DATE_TIME:
            for bad in ("yesterday", "2026-02-30T10:00:00Z", "2026-11-22 10:00:00Z", "2026-11-22T10:00:00"):
                yield f"{where}: format date-time {bad}", _with(doc, path, bad)


VIOLATIONS = list(_violations(_base()))


def test_the_violations_cover_every_keyword_of_the_schema() -> None:
    """The generator knows every keyword the schema uses, so no kind of violation goes untested."""
    known = {"type", "const", "enum", "pattern", "minimum", "maximum", "minLength", "minItems", "maxItems"}
    known |= {"uniqueItems", "items", "required", "additionalProperties", "format", "properties"}
    annotation = {"$schema", "$id", "title", "description"}
    used: set[str] = set()
    for _, schema in _locations(json_schema(), ()):
        used |= set(schema)
    assert used - annotation <= known
    kinds = {what.split(": ", 1)[1].split(" ")[0].rstrip(",") for what, _ in VIOLATIONS}
    assert kinds >= known - {"properties"} - ({"format"} if not _CHECKS_DATE_TIME else set())
    assert len(VIOLATIONS) > 150


@pytest.mark.parametrize(("what", "doc"), VIOLATIONS, ids=[what for what, _ in VIOLATIONS])
def test_both_validators_reject_each_violation_with_the_same_message(what: str, doc: dict[str, Any]) -> None:
    assert not _jsonschema_accepts(doc), what
    assert not _fast_accepts(doc), what  # the compiled validator finds it itself, not only its fallback
    new, old = _outcome(validate_document, doc), _outcome(_reference, doc)
    assert new == old
    assert new is not None
    assert new[0] == "AnnotationValidationError"
    assert new[1].startswith("s3://bucket/annotations/x/v0001.json: invalid annotation at $")


# -- the corners where the two libraries differ ----------------------------------------------------------

CORNERS = [
    # fastjsonschema takes a tuple for an array, jsonschema does not: the guard sends it to jsonschema.
    ("tuple classes", {**_base(), "classes": tuple(CLASSES)}, False),
    ("tuple models", {**_base(), "producer": {"models": ("m-1",)}}, False),
    ("tuple xyxy", _with(_base(), ("frames", 0, "boxes", 0, "xyxy"), (10.0, 20.0, 50.0, 90.0)), False),
    # fastjsonschema reads a pattern's $ as the end of the string (ECMA-262), jsonschema as Python's re
    # does: before a trailing newline too. The old verdict (accepted) stands.
    ("clip id with a trailing newline", {**_base(), "clip_id": CLIP + "\n"}, True),
    # Numbers that are not int or float: jsonschema counts any numbers.Number, fastjsonschema
    # int, float and Decimal.
    ("numpy float32 coordinate", _with(_base(), ("frames", 0, "boxes", 0, "xyxy", 0), np.float32(10)), True),
    ("numpy int64 width", _with(_base(), ("frames", 0, "width"), np.int64(320)), False),
    ("Decimal score", _with(_base(), ("frames", 0, "boxes", 0, "score"), Decimal("0.5")), True),
    ("numpy float64 score", _with(_base(), ("frames", 0, "boxes", 0, "score"), np.float64(0.5)), True),
    ("bool as an integer", {**_base(), "version": True}, False),
    ("bool as a number", _with(_base(), ("frames", 0, "boxes", 0, "score"), False), False),
    ("float index", _with(_base(), ("frames", 0, "index"), 0.0), True),
    ("fractional index", _with(_base(), ("frames", 0, "index"), 0.5), False),
    ("nan score", _with(_base(), ("frames", 0, "boxes", 0, "score"), math.nan), True),
    ("nan coordinate", _with(_base(), ("frames", 0, "boxes", 0, "xyxy", 0), math.nan), False),
    # date-time: both use RFC 3339 (rfc3339-validator) where jsonschema has it.
    ("arabic-indic digits", {**_base(), "created_at": "٢٠٢٦-11-22T10:00:00Z"}, False),
    ("leap second", {**_base(), "created_at": "2026-12-31T23:59:60Z"}, False),
    ("29 February, no leap year", {**_base(), "created_at": "2026-02-29T10:00:00Z"}, False),
    ("year 0", {**_base(), "created_at": "0000-01-01T10:00:00Z"}, False),
    ("offset without a colon", {**_base(), "created_at": "2026-11-22T10:00:00+0100"}, False),
    ("hour 24", {**_base(), "created_at": "2026-11-22T24:00:00Z"}, False),
    ("not a string date", {**_base(), "created_at": 20261122}, False),
    ("duplicate classes", {**_base(), "classes": ["person", "person"]}, False),
    ("classes 1 and True", {**_base(), "classes": [1, True]}, False),
    ("top level not an object", [], False),
    ("top level null", None, False),
    ("dict with int keys", _with(_base(), ("producer",), {1: "x"}), True),
    # A tuple where the schema says nothing: both accept, the guard only costs the jsonschema pass.
    ("tuple in a free producer field", {**_base(), "producer": {"anything": ("a", 1)}}, True),
]


@pytest.mark.parametrize(("what", "doc", "valid"), CORNERS, ids=[c[0] for c in CORNERS])
def test_corners_get_the_old_verdict_and_message(what: str, doc: Any, valid: bool) -> None:
    _check_same(doc)
    assert (_outcome(validate_document, doc) is None) == valid, what


def test_random_mutations_get_the_old_verdict_and_message() -> None:
    """Values replaced, removed or added at random places of a valid document."""
    pool: list[Any] = [None, True, False, 0, -1, 1, 7, 0.5, 1.5, -0.0, math.inf, math.nan, "", "x", CLIP]
    pool += [[], [1], ["a", "a"], {}, {"a": 1}, (1, 2), Decimal(1), np.float32(2), "2026-11-22T10:00:00Z"]
    pool += [[0.0, 0.0, 1.0, 1.0], "person", "human", "review", "none"]
    rng = random.Random(17)
    base = _base()
    paths: list[tuple[Any, ...]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, (*path, index))

    walk(base, ())
    accepted = 0
    for _ in range(400):
        doc = base
        for _ in range(rng.choice((1, 1, 2))):
            path = rng.choice(paths[1:])
            try:
                _get(doc, path)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced the place
            action = rng.random()
            if action < 0.7:
                doc = _with(doc, path, copy.deepcopy(rng.choice(pool)))
            elif action < 0.85 and isinstance(_get(doc, path[:-1]), dict):
                doc = _with(doc, path, _UNSET)
            else:
                doc = _with(doc, (*path[:-1], "extra") if isinstance(path[-1], str) else path, 1)
        _check_same(doc)
        accepted += _outcome(validate_document, doc) is None
    assert 0 < accepted < 400  # both kinds of outcome occur
