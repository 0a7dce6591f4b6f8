"""Our clip labels in Encord's terms and back, with the real SDK classes and no network.

* The ontology has one bounding-box object per class, each with a static ``track_id`` text attribute.
* Pre-labels are one :class:`~encord.objects.ObjectInstance` per track, with the detector's score as the
  per-frame confidence and ``manual_annotation=False``.
* A reviewed label row comes back in pixels of the exported frames: an Encord box is a fraction of the
  frame. Object hashes map to our track ids through the ``track_id`` answer; an object without one (the
  reviewer added it) gets a new track id. A box equal to the exported one keeps its origin and score;
  every other box is ``origin: "human"``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from encord.objects import LabelRowV2, Object, ObjectInstance, OntologyStructure, Shape
from encord.objects.attributes import TextAttribute
from encord.objects.coordinates import BoundingBoxCoordinates
from encord.ontology import Ontology
from encord.orm.ontology import Ontology as OrmOntology
from encord.orm.storage import CustomerProvidedVideoMetadata

from dataengine.errors import AnnotationValidationError
from dataengine.formats import Box, ClipAnnotations, Frame
from dataengine.review.base import reviewed_version

log = logging.getLogger(__name__)

TRACK_ATTRIBUTE = "track_id"
#: Who the pre-labels say created them.
CREATED_BY = "dataengine-autolabel"
#: Two coordinates closer than this (a fraction of a pixel) are the same: JSON float round trips.
PIXEL_TOLERANCE = 1e-3


def feature_hash(kind: str, name: str) -> str:
    """A stable 8-character feature hash, so the same classes always give the same ontology."""
    return hashlib.sha256(f"dataengine:{kind}:{name}".encode()).hexdigest()[:8]


def ontology_structure(classes: list[str]) -> OntologyStructure:
    """Bounding-box objects for ``classes``, each with a static ``track_id`` text attribute."""
    structure = OntologyStructure()
    for name in classes:
        obj = structure.add_object(
            name=name, shape=Shape.BOUNDING_BOX, feature_node_hash=feature_hash("obj", name)
        )
        obj.add_attribute(TextAttribute, TRACK_ATTRIBUTE, feature_node_hash=feature_hash("trk", name))
    return structure


def offline_ontology(structure: OntologyStructure) -> Ontology:
    """An SDK ontology object around ``structure`` that never talks to a server."""
    now = datetime.now()
    orm = OrmOntology(
        title="dataengine",
        structure=structure,
        ontology_hash="dataengine",
        created_at=now,
        last_edited_at=now,
    )
    return Ontology(orm, api_client=None)  # type: ignore[arg-type]  # only .save() would use it


def structure_from_row(row: dict[str, Any], *, source_name: str) -> OntologyStructure:
    """The part of the ontology a label row uses, rebuilt from the row's own feature hashes and names.

    A label export file carries no ontology; this lets it be read whatever hashes the project has.
    """
    structure = OntologyStructure()
    objects: dict[str, Object] = {}
    for where, obj in _row_objects(row, source_name):
        feature, name = obj.get("featureHash"), obj.get("name")
        if not isinstance(feature, str) or not isinstance(name, str):
            raise AnnotationValidationError(source_name, where, "an object needs a featureHash and a name")
        if feature not in objects:
            objects[feature] = structure.add_object(
                name=name, shape=Shape.BOUNDING_BOX, feature_node_hash=feature
            )
    for object_hash, answers in _dict(row.get("object_answers"), source_name, "$.object_answers").items():
        for answer in answers.get("classifications", []) if isinstance(answers, dict) else []:
            if not isinstance(answer, dict) or answer.get("name") != TRACK_ATTRIBUTE:
                continue
            feature, owner = answer.get("featureHash"), _object_feature(row, object_hash)
            if not isinstance(feature, str) or owner not in objects:
                continue
            target = objects[owner]
            if not any(attr.feature_node_hash == feature for attr in target.attributes):
                target.add_attribute(TextAttribute, TRACK_ATTRIBUTE, feature_node_hash=feature)
    return structure


def video_metadata(
    *, fps: float, n_frames: int, width: int, height: int, size: int = 1
) -> CustomerProvidedVideoMetadata:
    """What Encord needs to know of a clip video; given, it skips its own probing of the file."""
    return CustomerProvidedVideoMetadata(
        fps=fps,
        duration=n_frames / fps,
        width=width,
        height=height,
        file_size=max(size, 1),
        mime_type="video/mp4",
    )


def add_prelabels(row: LabelRowV2, structure: OntologyStructure, annotations: ClipAnnotations) -> int:
    """Add one object instance per track of ``annotations`` to ``row``; returns how many."""
    tracks: dict[tuple[str, int | str], list[tuple[Frame, Box]]] = {}
    for frame in annotations.frames:
        for j, box in enumerate(frame.boxes):
            # An untracked box is its own one-frame object: nothing says it is the same as another.
            key: int | str = box.track if box.track is not None else f"f{frame.index}b{j}"
            tracks.setdefault((box.label, key), []).append((frame, box))
    for (label, track), boxes in tracks.items():
        obj = structure.get_child_by_title(label, type_=Object)
        instance: ObjectInstance = obj.create_instance()
        for frame, box in boxes:
            instance.set_for_frames(
                fraction_box(box, frame),
                frames=frame.index,
                confidence=box.score if box.score is not None else 1.0,
                manual_annotation=False,
                created_by=CREATED_BY,
            )
        if isinstance(track, int):
            attribute = obj.get_child_by_title(TRACK_ATTRIBUTE, type_=TextAttribute)
            instance.set_answer(str(track), attribute=attribute, manual_annotation=False)
        row.add_object_instance(instance)
    return len(tracks)


def fraction_box(box: Box, frame: Frame) -> BoundingBoxCoordinates:
    """``box`` (pixels of ``frame``) as Encord's fractions of the frame, top-left origin."""
    x1, y1, x2, y2 = box.xyxy
    return BoundingBoxCoordinates(
        top_left_x=x1 / frame.width,
        top_left_y=y1 / frame.height,
        width=(x2 - x1) / frame.width,
        height=(y2 - y1) / frame.height,
    )


def pixel_xyxy(coords: BoundingBoxCoordinates, frame: Frame) -> tuple[float, float, float, float]:
    """Encord fractions as pixels of ``frame``, clipped to it."""
    x1 = coords.top_left_x * frame.width
    y1 = coords.top_left_y * frame.height
    x2 = x1 + coords.width * frame.width
    y2 = y1 + coords.height * frame.height
    return (
        min(max(x1, 0.0), float(frame.width)),
        min(max(y1, 0.0), float(frame.height)),
        min(max(x2, 0.0), float(frame.width)),
        min(max(y2, 0.0), float(frame.height)),
    )


def clip_id_of_title(title: str) -> str:
    """The clip id a data title names: the title without its file extension."""
    return PurePosixPath(title).stem if "." in title else title


def data_title(clip_id: str) -> str:
    """The title of a clip video on Encord."""
    return f"{clip_id}.mp4"


def parse_row(row: dict[str, Any], ontology: Ontology, *, source_name: str) -> LabelRowV2:
    """``row`` (a label row dict, as ``to_encord_dict()`` or the UI export write it) read by the SDK.

    Raises :class:`AnnotationValidationError` naming ``source_name`` and the first bad field.
    """
    check_row(row, ontology.structure, source_name=source_name)
    unit = _data_unit(row, source_name)
    fps, duration = float(unit["data_fps"]), float(unit["data_duration"])
    meta = CustomerProvidedVideoMetadata(
        fps=fps,
        duration=duration,
        width=int(unit["width"]),
        height=int(unit["height"]),
        file_size=1,
        mime_type="video/mp4",
    )
    parsed = LabelRowV2.from_media_metadata(ontology, meta)
    try:
        parsed.from_labels_dict(row)
    except Exception as exc:  # the SDK raises KeyError, TypeError, LabelRowError ... on bad rows
        raise AnnotationValidationError(
            source_name, "$", f"the Encord SDK cannot read the row: {exc!r}"
        ) from exc
    return parsed


def check_row(row: dict[str, Any], structure: OntologyStructure, *, source_name: str) -> None:
    """Refuse a row the SDK would misread silently: unknown objects and boxes outside the frame."""
    known = {obj.feature_node_hash for obj in structure.objects}
    for where, obj in _row_objects(row, source_name):
        if obj.get("featureHash") not in known:
            raise AnnotationValidationError(
                source_name,
                f"{where}.featureHash",
                f"{obj.get('featureHash')!r} is not an object of the ontology",
            )
        box = obj.get("boundingBox")
        if not isinstance(box, dict):
            raise AnnotationValidationError(source_name, f"{where}.boundingBox", "a bounding box is required")
        values = {key: box.get(key) for key in ("x", "y", "w", "h")}
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values.values()):
            raise AnnotationValidationError(
                source_name, f"{where}.boundingBox", f"x, y, w, h must be numbers: {box}"
            )
        x, y, w, h = (float(values[k]) for k in ("x", "y", "w", "h"))  # type: ignore[arg-type]
        if w <= 0 or h <= 0 or x < -0.01 or y < -0.01 or x + w > 1.01 or y + h > 1.01:
            raise AnnotationValidationError(
                source_name,
                f"{where}.boundingBox",
                f"{box} is not a non-empty box inside the frame (fractions 0..1)",
            )


def _dict(value: Any, source_name: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AnnotationValidationError(source_name, where, f"expected an object, got {type(value).__name__}")
    return value


def _data_unit(row: dict[str, Any], source_name: str) -> dict[str, Any]:
    units = _dict(row.get("data_units"), source_name, "$.data_units")
    if len(units) != 1:
        raise AnnotationValidationError(
            source_name, "$.data_units", f"expected one video, found {len(units)} units"
        )
    unit = next(iter(units.values()))
    for key in ("data_fps", "data_duration", "width", "height"):
        value = unit.get(key) if isinstance(unit, dict) else None
        if not isinstance(value, int | float) or value <= 0:
            raise AnnotationValidationError(
                source_name, f"$.data_units.*.{key}", f"a positive number is required, got {value!r}"
            )
    return unit  # type: ignore[no-any-return]


def _row_objects(row: dict[str, Any], source_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every per-frame object of the row's video, with its JSON path."""
    unit = _data_unit(row, source_name)
    data_hash = next(iter(row["data_units"]))
    labels = _dict(unit.get("labels"), source_name, f"$.data_units.{data_hash}.labels")
    for frame, content in labels.items():
        where = f"$.data_units.{data_hash}.labels.{frame}"
        if not str(frame).isdigit():
            raise AnnotationValidationError(source_name, where, f"frame key {frame!r} is not a frame number")
        objects = _dict(content, source_name, where).get("objects", [])
        if not isinstance(objects, list):
            raise AnnotationValidationError(source_name, f"{where}.objects", "expected a list")
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict):
                raise AnnotationValidationError(source_name, f"{where}.objects[{i}]", "expected an object")
            yield f"{where}.objects[{i}]", obj


def _object_feature(row: dict[str, Any], object_hash: str) -> str | None:
    for _, obj in _row_objects(row, "<row>"):
        if obj.get("objectHash") == object_hash:
            feature = obj.get("featureHash")
            return feature if isinstance(feature, str) else None
    return None


def reviewers_of(row: LabelRowV2) -> list[str]:
    """Who edited boxes by hand in the row, from the annotations' ``lastEditedBy``/``createdBy``."""
    names: dict[str, None] = {}
    for instance in row.get_object_instances():
        for annotation in instance.get_annotations():
            if annotation.manual_annotation:
                who = annotation.last_edited_by or annotation.created_by
                if who and who != CREATED_BY:
                    names[who] = None
    return list(names)


def to_annotations(row: LabelRowV2, *, exported: ClipAnnotations, source_name: str) -> ClipAnnotations:
    """The reviewed labels of ``row`` on the exported frames, checked against the exported version."""
    frames = {
        frame.index: Frame(frame.index, frame.image, frame.width, frame.height, [])
        for frame in exported.frames
    }
    originals = {frame.index: frame.boxes for frame in exported.frames}
    next_track = 1 + max((box.track or 0 for frame in exported.frames for box in frame.boxes), default=0)
    ignored = 0
    for instance in sorted(row.get_object_instances(), key=lambda inst: inst.object_hash):
        track, next_track = _track_of(instance, next_track)
        label = instance.ontology_item.title
        for annotation in instance.get_annotations():
            frame = frames.get(annotation.frame)
            if frame is None:
                ignored += 1  # e.g. interpolated boxes between the sampled frames
                continue
            coords = annotation.coordinates
            if not isinstance(coords, BoundingBoxCoordinates):
                raise AnnotationValidationError(
                    source_name,
                    f"frame {annotation.frame}",
                    f"object {instance.object_hash} is not a bounding box",
                )
            xyxy = pixel_xyxy(coords, frame)
            kept = _unchanged(originals[frame.index], label, xyxy)
            frame.boxes.append(kept or Box(label=label, xyxy=xyxy, track=track, score=None, origin="human"))
    if ignored:
        log.info("%s: %d box(es) on frames that were not exported are not imported", source_name, ignored)
    return reviewed_version(exported, frames, source_name=source_name)


def _track_of(instance: ObjectInstance, next_track: int) -> tuple[int, int]:
    """Our track id of an Encord object (from its ``track_id`` answer), or a new one."""
    try:
        attribute = instance.ontology_item.get_child_by_title(TRACK_ATTRIBUTE, type_=TextAttribute)
        answer = instance.get_answer(attribute)
    except Exception:  # the ontology has no track_id attribute for this object
        answer = None
    if isinstance(answer, str) and answer.strip().isdigit():
        return int(answer), next_track
    return next_track, next_track + 1


def _unchanged(originals: list[Box], label: str, xyxy: tuple[float, float, float, float]) -> Box | None:
    """The exported box that ``xyxy`` still is (same label and place), or ``None``."""
    for box in originals:
        if box.label == label and all(
            abs(a - b) <= PIXEL_TOLERANCE for a, b in zip(box.xyxy, xyxy, strict=True)
        ):
            return box
    return None
