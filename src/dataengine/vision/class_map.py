"""Class maps: which of a foreign model's labels become which of our classes.

A model brought in from elsewhere (a COCO detector, an open-vocabulary detector prompted with text) emits
its own labels. ``--class-map 1=person,65=bed`` names, for some of them, the class of ours each becomes;
detections of the other labels are dropped. A source label is given by its id or by its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import ModelError


def parse_classes(text: str) -> list[str]:
    """``"person,bed"`` as a list of unique, non-empty class names."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise ModelError(f"--classes {text!r}: a class name is empty; write e.g. --classes person,bed")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(f"--classes {text!r} names {', '.join(duplicates)} more than once")
    return names


def parse_class_map(text: str) -> list[tuple[str, str]]:
    """``"1=person,bed=bed"`` as ``[("1", "person"), ("bed", "bed")]`` (source label, our class)."""
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        source, sep, target = part.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ModelError(
                f"--class-map {text!r}: {part!r} is not SOURCE=CLASS; write e.g. --class-map 1=person,65=bed"
            )
        pairs.append((source.strip(), target.strip()))
    return pairs


@dataclass(frozen=True)
class LabelMap:
    """Source label index → index into ``classes`` (-1: dropped)."""

    classes: tuple[str, ...]
    lookup: tuple[int, ...]

    def to_config(self) -> dict[str, str]:
        """The JSON form stored in a checkpoint config: ``{"<source index>": "<class name>"}``."""
        return {str(i): self.classes[k] for i, k in enumerate(self.lookup) if k >= 0}

    @classmethod
    def from_config(cls, mapping: Mapping[str, str], *, n_source: int, classes: Sequence[str]) -> LabelMap:
        """The map stored by :meth:`to_config`."""
        index = {name: i for i, name in enumerate(classes)}
        lookup = [-1] * n_source
        for source, target in mapping.items():
            if target not in index or not 0 <= int(source) < n_source:
                raise ModelError(f"stored label map {dict(mapping)} does not fit classes {list(classes)}")
            lookup[int(source)] = index[target]
        return cls(tuple(classes), tuple(lookup))

    def array(self) -> NDArray[np.int64]:
        """The lookup as an array, for mapping many labels at once."""
        return np.asarray(self.lookup, dtype=np.int64)

    @property
    def mapped(self) -> dict[int, str]:
        """Source index → class name, for the mapped labels only."""
        return {i: self.classes[k] for i, k in enumerate(self.lookup) if k >= 0}


def build_label_map(
    pairs: Sequence[tuple[str, str]],
    *,
    source_names: Sequence[str | None],
    classes: Sequence[str],
    id_offset: int = 0,
    what: str,
) -> LabelMap:
    """A :class:`LabelMap` from ``--class-map`` pairs.

    ``source_names[i]`` is the name of source index ``i`` (None when unnamed). A numeric source is a label
    id; ``id_offset`` is subtracted to get the index (torchvision's ids count the background as 0).
    ``what`` names the model in errors.
    """
    index = {name: i for i, name in enumerate(classes)}
    lookup = [-1] * len(source_names)
    for source, target in pairs:
        if target not in index:
            raise ModelError(
                f"{what}: --class-map {source}={target} names class {target!r}, which is not one of ours "
                f"({', '.join(classes)}); add it with --classes or DATAENGINE_CLASSES"
            )
        position = _source_index(source, source_names, id_offset=id_offset, what=what)
        if lookup[position] >= 0 and lookup[position] != index[target]:
            raise ModelError(f"{what}: --class-map maps source label {source!r} twice")
        lookup[position] = index[target]
    return LabelMap(tuple(classes), tuple(lookup))


def _source_index(source: str, names: Sequence[str | None], *, id_offset: int, what: str) -> int:
    if source.isdigit():
        position = int(source) - id_offset
        if not 0 <= position < len(names):
            first, last = id_offset, len(names) - 1 + id_offset
            raise ModelError(
                f"{what}: --class-map names label id {source}, but the model's label ids run "
                f"from {first} to {last}"
            )
        return position
    matches = [i for i, name in enumerate(names) if name == source]
    if not matches:
        known = [n for n in names if n]
        hint = f"its labels include {', '.join(known[:12])}" if known else "its labels have no names: use ids"
        raise ModelError(f"{what}: --class-map names label {source!r}, which the model does not have; {hint}")
    return matches[0]


def identity_map(classes: Sequence[str]) -> LabelMap:
    """Each source index is the class of the same index (a model trained on exactly ``classes``)."""
    return LabelMap(tuple(classes), tuple(range(len(classes))))
