"""A manifest as a few flat numpy arrays, for the per-clip Dataset.

DataLoader workers are forked from the process that built the Dataset. A Python list of strings or dicts
has one refcounted object per item, and merely reading an item writes its refcount, so every worker
slowly copies every page it touches (pytorch/pytorch#13246). Numpy arrays of bytes have no per-item
objects: the pages stay shared. Strings are packed as one byte buffer plus offsets.

Manifests are written in one canonical form (sorted keys, compact separators, no escapes), which is read
column by column with a regular expression per field; anything else falls back to ``json.loads`` per line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import FormatError
from dataengine.storage import ObjectStore
from dataengine.training.manifest import SPLITS, parse_manifest

_FIELD = {name: re.compile(rb'"' + name.encode() + rb'":"([^"]*)"') for name in ("clip_id", "uri", "sha256")}
_SPLIT = re.compile(rb'"split":"([^"]*)"')
_VERSION = re.compile(rb'"annotation_version":(-?[0-9]+)')
_FRAMES = re.compile(rb'"frames":\[([0-9,\s]*)\]')


class PackedStrings:
    """Many short strings in two arrays: UTF-8 bytes (uint8) and ``n + 1`` offsets (int64)."""

    def __init__(self, data: NDArray[np.uint8], offsets: NDArray[np.int64]) -> None:
        """Wrap packed bytes; string ``i`` is ``data[offsets[i]:offsets[i + 1]]``."""
        self.data = data
        self.offsets = offsets

    @classmethod
    def pack(cls, items: Sequence[bytes]) -> PackedStrings:
        """Pack a sequence of byte strings."""
        lengths = np.fromiter((len(item) for item in items), dtype=np.int64, count=len(items))
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.frombuffer(b"".join(items), dtype=np.uint8).copy(), offsets)

    def __len__(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def __getitem__(self, index: int) -> str:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.data[start:end].tobytes().decode("utf-8")

    def take(self, positions: NDArray[np.int64]) -> PackedStrings:
        """The strings at ``positions``, packed again (vectorised: no Python object per string)."""
        starts = self.offsets[positions]
        lengths = self.offsets[positions + 1] - starts
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(int(offsets[-1]), dtype=np.int64)
        return PackedStrings(self.data[gather], offsets)

    @property
    def nbytes(self) -> int:
        """Memory held by the two arrays."""
        return int(self.data.nbytes + self.offsets.nbytes)


@dataclass(frozen=True)
class ManifestColumns:
    """One manifest as arrays: per clip (``n``) and per labelled frame (``frames``)."""

    clip_ids: PackedStrings
    uris: PackedStrings
    sha256: NDArray[np.uint8]  # (n, 32)
    annotation_versions: NDArray[np.int32]
    splits: NDArray[np.int8]  # index into SPLITS
    frame_offsets: NDArray[np.int64]  # (n + 1,): frames of clip i are frames[offsets[i]:offsets[i+1]]
    frames: NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def select(self, split: str | None) -> ManifestColumns:
        """Only the clips of ``split`` (None: all of them)."""
        chosen = self.splits == SPLITS.index(split) if split is not None else None
        if chosen is None or bool(chosen.all()):
            return self
        positions = np.flatnonzero(chosen).astype(np.int64)
        counts = np.diff(self.frame_offsets)[positions]
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = self.frame_offsets[positions]
        frame_pos = np.repeat(starts - offsets[:-1], counts) + np.arange(int(offsets[-1]), dtype=np.int64)
        return ManifestColumns(
            clip_ids=self.clip_ids.take(positions),
            uris=self.uris.take(positions),
            sha256=self.sha256[positions],
            annotation_versions=self.annotation_versions[positions],
            splits=self.splits[positions],
            frame_offsets=offsets,
            frames=self.frames[frame_pos],
        )

    def sha256_hex(self, position: int) -> str:
        """The SHA-256 of clip ``position``'s annotation file, as hex."""
        return str(self.sha256[position].tobytes().hex())

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        arrays = (self.sha256, self.annotation_versions, self.splits, self.frame_offsets, self.frames)
        return self.clip_ids.nbytes + self.uris.nbytes + sum(int(a.nbytes) for a in arrays)


def read_manifest_columns(store: ObjectStore, manifest: str) -> ManifestColumns:
    """The manifest at ``manifest`` (a key or a URI inside ``store``) as :class:`ManifestColumns`."""
    key = store.key_of(manifest) if "://" in manifest else manifest
    data = store.read_bytes(key)
    source = store.uri(key)
    return _canonical_columns(data, source) or _json_columns(data, source)


def _split_codes(values: Sequence[bytes], source: str) -> NDArray[np.int8]:
    codes = np.full(len(values), -1, dtype=np.int8)
    for code, name in enumerate(SPLITS):
        codes[np.asarray(values, dtype=object) == name.encode()] = code
    if (codes < 0).any():
        bad = values[int(np.flatnonzero(codes < 0)[0])].decode("utf-8", "replace")
        raise FormatError(f"{source}: split {bad!r} is not one of {SPLITS}")
    return codes


def _sha_array(values: Sequence[bytes], source: str) -> NDArray[np.uint8]:
    try:
        packed = bytes.fromhex(b"".join(values).decode("ascii"))
    except ValueError as exc:
        raise FormatError(f"{source}: a sha256 is not hexadecimal ({exc})") from exc
    if any(len(v) != 64 for v in values):
        raise FormatError(f"{source}: a sha256 is not 64 hexadecimal digits")
    return np.frombuffer(packed, dtype=np.uint8).reshape(-1, 32).copy()


def _frames(parts: Sequence[bytes]) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    counts = np.fromiter((p.count(b",") + 1 if p.strip() else 0 for p in parts), np.int64, len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    text = b",".join(p for p in parts if p.strip())
    frames = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, np.int64)
    return offsets, frames.astype(np.int32)


def _canonical_columns(data: bytes, source: str) -> ManifestColumns | None:
    """Column-wise parse of a canonical manifest; None when the bytes are not in that form."""
    if b"\\" in data:
        return None
    n_lines = sum(1 for line in data.split(b"\n") if line.strip())
    fields = {name: pattern.findall(data) for name, pattern in _FIELD.items()}
    splits, versions, frames = _SPLIT.findall(data), _VERSION.findall(data), _FRAMES.findall(data)
    if any(len(v) != n_lines for v in (*fields.values(), splits, versions, frames)):
        return None
    offsets, frame_indexes = _frames(frames)
    if int(offsets[-1]) != len(frame_indexes):
        return None
    return ManifestColumns(
        clip_ids=PackedStrings.pack(fields["clip_id"]),
        uris=PackedStrings.pack(fields["uri"]),
        sha256=_sha_array(fields["sha256"], source),
        annotation_versions=np.array([int(v) for v in versions], dtype=np.int32),
        splits=_split_codes(splits, source),
        frame_offsets=offsets,
        frames=frame_indexes,
    )


def _json_columns(data: bytes, source: str) -> ManifestColumns:
    """The general path: each line through ``json.loads`` and :class:`ManifestEntry`'s checks."""
    entries = parse_manifest(data, source_name=source)
    counts = np.array([e.n_frames for e in entries], dtype=np.int64)
    offsets = np.zeros(len(entries) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ManifestColumns(
        clip_ids=PackedStrings.pack([e.clip_id.encode() for e in entries]),
        uris=PackedStrings.pack([e.uri.encode() for e in entries]),
        sha256=_sha_array([e.sha256.encode() for e in entries], source),
        annotation_versions=np.array([e.annotation_version for e in entries], dtype=np.int32),
        splits=np.array([SPLITS.index(e.split) for e in entries], dtype=np.int8),
        frame_offsets=offsets,
        frames=np.array([f for e in entries for f in e.frames], dtype=np.int32),
    )
