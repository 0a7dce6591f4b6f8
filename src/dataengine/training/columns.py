"""A manifest as a few flat numpy arrays, for the per-clip Dataset.

DataLoader workers are forked from the process that built the Dataset. A Python list of strings or dicts
has one refcounted object per item, and merely reading an item writes its refcount, so every worker
slowly copies every page it touches (pytorch/pytorch#13246). Numpy arrays of bytes have no per-item
objects: the pages stay shared. Strings are packed as one byte buffer plus offsets.

Manifests are written in one canonical form (sorted keys, compact separators, no escapes), which is read
column by column with a regular expression per field; anything else falls back to ``json.loads`` per line.

Parsing a manifest of 170,000 clips still takes about a second, so the build also writes these arrays
next to it, ``manifest.index.npz`` (:func:`index_key`), tagged with the SHA-256 of the manifest's bytes.
:func:`read_manifest_columns` hashes the manifest (about 0.1 s for 60 MB) and loads the index only when
the tags match and the arrays are consistent; otherwise it parses the manifest and writes the index again.
A stale, foreign or broken index is therefore never used, only ignored.

On a local store the index's arrays are memory-mapped from the file rather than read: forked workers
then share the file's pages without each carrying a copy of the main process's page tables, so the
arrays count once, not once per worker (the index is uncompressed for this reason).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import FormatError, ObjectNotFoundError, StorageError
from dataengine.storage import ObjectStore
from dataengine.training.manifest import SPLITS, parse_manifest

log = logging.getLogger(__name__)

#: Bumped whenever the arrays of the index change meaning; an index of another format is ignored.
INDEX_FORMAT = 1
_INDEX_SUFFIX = ".index.npz"
_HASH_CHUNK = 8 * 2**20

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


def index_key(manifest_key: str) -> str:
    """The key of a manifest's columnar index: ``.../manifest.jsonl`` -> ``.../manifest.index.npz``."""
    stem = manifest_key.removesuffix(".jsonl")
    return stem + _INDEX_SUFFIX


def read_manifest_columns(store: ObjectStore, manifest: str, *, write_index: bool = True) -> ManifestColumns:
    """The manifest at ``manifest`` (a key or a URI inside ``store``) as :class:`ManifestColumns`.

    Served from the manifest's index when it matches the manifest's bytes; otherwise the manifest is
    parsed and, with ``write_index``, its index is written (a store that refuses the write only costs
    the next reader another parse).
    """
    key = store.key_of(manifest) if "://" in manifest else manifest
    stamp = manifest_fingerprint(store, key)
    columns = load_index(store, key, fingerprint=stamp)
    if columns is None:
        columns = load_index(store, key, manifest_sha256=_stream_sha256(store, key))
    if columns is not None:
        return columns
    data = store.read_bytes(key)
    columns = parse_manifest_columns(data, store.uri(key))
    if write_index:
        try:
            write_index_for(
                store, key, columns, manifest_sha256=hashlib.sha256(data).digest(), fingerprint=stamp
            )
        except StorageError as exc:
            log.warning("could not write the index of %s, parsing it each time instead: %s", key, exc)
    return columns


def parse_manifest_columns(data: bytes, source: str) -> ManifestColumns:
    """The columns of the manifest bytes ``data`` (``source`` names it in errors)."""
    return _canonical_columns(data, source) or _json_columns(data, source)


def index_manifest(store: ObjectStore, key: str, data: bytes) -> ManifestColumns:
    """Write the index of the manifest ``data`` just written at ``key`` (what a dataset build does)."""
    columns = parse_manifest_columns(data, store.uri(key))
    stamp = manifest_fingerprint(store, key)
    write_index_for(store, key, columns, manifest_sha256=hashlib.sha256(data).digest(), fingerprint=stamp)
    return columns


def manifest_fingerprint(store: ObjectStore, key: str) -> bytes | None:
    """``size:version`` of the object at ``key`` from the store's metadata (ETag on S3, modification time
    on disk), as the ingest hash cache knows files; None when the store gives no version to trust.

    An index that records the manifest's fingerprint is trusted while the fingerprint is unchanged, so
    start-up need not hash a manifest that grows with the data (about 1 s per 500 MB).
    """
    found = store.fingerprint(key)  # None only means hashing the manifest
    return found.encode() if found is not None else None


def write_index_for(
    store: ObjectStore,
    key: str,
    columns: ManifestColumns,
    *,
    manifest_sha256: bytes,
    fingerprint: bytes | None = None,
) -> None:
    """Write ``columns`` as the index of the manifest at ``key`` whose bytes hash to ``manifest_sha256``
    (and whose :func:`manifest_fingerprint` was ``fingerprint`` before its bytes were read).

    One uncompressed ``.npz`` (a zip of ``.npy`` files, each CRC-checked on read), written atomically by
    the store: a reader sees the old index, the new one or none, never half of one.
    """
    buffer = io.BytesIO()
    np.savez(
        buffer,
        format=np.array([INDEX_FORMAT], dtype=np.int64),
        manifest_sha256=np.frombuffer(manifest_sha256, dtype=np.uint8),
        manifest_fingerprint=np.frombuffer(fingerprint or b"", dtype=np.uint8),
        clip_ids_data=columns.clip_ids.data,
        clip_ids_offsets=columns.clip_ids.offsets,
        uris_data=columns.uris.data,
        uris_offsets=columns.uris.offsets,
        sha256=columns.sha256,
        annotation_versions=columns.annotation_versions,
        splits=columns.splits,
        frame_offsets=columns.frame_offsets,
        frames=columns.frames,
    )
    store.write_bytes(index_key(key), buffer.getvalue())


def load_index(
    store: ObjectStore, key: str, *, manifest_sha256: bytes | None = None, fingerprint: bytes | None = None
) -> ManifestColumns | None:
    """The columns in the index of the manifest at ``key``; None when there is none or it does not
    belong to a manifest with the bytes hashing to ``manifest_sha256`` (or, when that is not given,
    with the fingerprint ``fingerprint``), or is not a consistent index.
    """
    if manifest_sha256 is None and not fingerprint:
        return None
    try:
        local = store.local_file(index_key(key))
        arrays = _mapped_npz(local) if local is not None else None
        if arrays is None:
            with store.open_read(index_key(key)) as handle, np.load(handle, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
    except ObjectNotFoundError:
        return None
    except Exception as exc:  # the index is a cache: whatever is wrong with it, parse instead
        log.warning("ignoring the unreadable index of %s: %s: %s", key, type(exc).__name__, exc)
        return None
    try:
        if arrays["format"].tolist() != [INDEX_FORMAT]:
            return None
        if manifest_sha256 is None:
            if (
                "manifest_fingerprint" not in arrays
                or arrays["manifest_fingerprint"].tobytes() != fingerprint
            ):
                return None  # changed or unknown since the index was written: the caller hashes it
        elif arrays["manifest_sha256"].tobytes() != manifest_sha256:
            log.info("the index of %s was written for other manifest bytes; parsing the manifest", key)
            return None
        columns = ManifestColumns(
            clip_ids=PackedStrings(arrays["clip_ids_data"], arrays["clip_ids_offsets"]),
            uris=PackedStrings(arrays["uris_data"], arrays["uris_offsets"]),
            sha256=arrays["sha256"],
            annotation_versions=arrays["annotation_versions"],
            splits=arrays["splits"],
            frame_offsets=arrays["frame_offsets"],
            frames=arrays["frames"],
        )
    except KeyError as exc:
        log.warning("ignoring the index of %s: it lacks %s", key, exc)
        return None
    problem = _inconsistency(columns)
    if problem:
        log.warning("ignoring the index of %s: %s", key, problem)
        return None
    return columns


def _mapped_npz(path: Path) -> dict[str, NDArray[Any]] | None:
    """The arrays of the uncompressed ``.npz`` at ``path`` as read-only memory maps; None when the file is
    missing or not a plain uncompressed archive of ``.npy`` members (the caller then reads it whole)."""
    if not path.is_file():
        return None
    arrays: dict[str, NDArray[Any]] = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            raw.seek(info.header_offset)
            local = raw.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            if raw.read(name_length) != info.filename.encode() or not _local_header_agrees(local, info):
                raise ValueError(f"{info.filename}: its local header disagrees with the zip directory")
            raw.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(raw)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
            else:
                return None
            if dtype.hasobject:
                return None
            name = info.filename.removesuffix(".npy")
            if int(np.prod(shape)) == 0:  # mmap cannot map zero bytes
                arrays[name] = np.empty(shape, dtype=dtype)
                continue
            order: Literal["C", "F"] = "F" if fortran else "C"
            arrays[name] = np.memmap(
                str(path), dtype=dtype, mode="r", offset=raw.tell(), shape=tuple(shape), order=order
            )
    return arrays


def _local_header_agrees(local: bytes, info: zipfile.ZipInfo) -> bool:
    """Whether a member's local header gives the CRC and sizes of the central directory (unless it
    defers them to a data descriptor or to zip64 fields)."""
    flags, crc, compressed, size = struct.unpack("<H6xIII", local[6:26])
    if flags & 0x08:
        return True
    if crc != info.CRC:
        return False
    return compressed in (info.compress_size, 0xFFFFFFFF) and size in (info.file_size, 0xFFFFFFFF)


def _offsets_problem(offsets: NDArray[np.int64], n: int, total: int) -> bool:
    return (
        offsets.dtype != np.int64
        or offsets.shape != (n + 1,)
        or int(offsets[0]) != 0
        or int(offsets[-1]) != total
        or bool((np.diff(offsets) < 0).any())
    )


def _inconsistency(c: ManifestColumns) -> str | None:
    """What is wrong with the arrays of an index (types, shapes, offsets, split codes); None if nothing."""
    if c.clip_ids.offsets.ndim != 1 or c.clip_ids.offsets.shape[0] == 0:
        return "inconsistent clip ids"
    n = int(c.clip_ids.offsets.shape[0]) - 1
    checks = {
        "clip ids": c.clip_ids.data.dtype != np.uint8
        or c.clip_ids.data.ndim != 1
        or _offsets_problem(c.clip_ids.offsets, n, c.clip_ids.data.shape[0]),
        "uris": c.uris.data.dtype != np.uint8
        or c.uris.data.ndim != 1
        or _offsets_problem(c.uris.offsets, n, c.uris.data.shape[0]),
        "sha256": c.sha256.dtype != np.uint8 or c.sha256.shape != (n, 32),
        "annotation versions": c.annotation_versions.dtype != np.int32 or c.annotation_versions.shape != (n,),
        "splits": c.splits.dtype != np.int8
        or c.splits.shape != (n,)
        or bool(((c.splits < 0) | (c.splits >= len(SPLITS))).any()),
        "frames": c.frames.dtype != np.int32
        or c.frames.ndim != 1
        or _offsets_problem(c.frame_offsets, n, c.frames.shape[0]),
    }
    bad = [name for name, wrong in checks.items() if wrong]
    return f"inconsistent {', '.join(bad)}" if bad else None


def _stream_sha256(store: ObjectStore, key: str) -> bytes:
    """The SHA-256 of the object at ``key``, read in chunks: the manifest is never held whole for it."""
    digest = hashlib.sha256()
    with store.open_read(key) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.digest()


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
