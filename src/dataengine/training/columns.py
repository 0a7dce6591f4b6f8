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

On a local store the index's arrays are not loaded: each is a ``file_arrays.FileArray`` that
reads with ``pread`` only the items it is indexed with (the index is uncompressed for this reason), so
neither the main process nor its forked workers hold them, and no page of the file counts in their RSS.

The index also holds each split's clips (their positions, grouped by split, in manifest order) and the
running count of their frames, so that one split's samples are views on those arrays (:class:`SplitSamples`,
:meth:`ManifestColumns.samples`): nothing is copied or built per clip or per sample at start-up, and a
sample's clip is found by a binary search over the running counts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import FormatError, ObjectNotFoundError, StorageError
from dataengine.storage import ObjectStore
from dataengine.training.file_arrays import npz_file_arrays, search_right
from dataengine.training.manifest import SPLITS, parse_manifest

log = logging.getLogger(__name__)

#: Bumped whenever the arrays of the index change meaning; an index of another format is ignored.
#: 2: the per-split arrays (``split_clips``, ``split_starts``, ``split_sample_offsets``) were added.
INDEX_FORMAT = 2
_INDEX_SUFFIX = ".index.npz"
_HASH_CHUNK = 8 * 2**20
#: Clips per step of the consistency checks: bounds their temporaries (a few MB) whatever the manifest's size.
_CHECK_CHUNK = 1 << 18

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
    # The clips grouped by split (SPLITS order), each group in manifest order: split s is
    # split_clips[split_starts[s]:split_starts[s + 1]]; split_sample_offsets (n + 1,) is the running count
    # of the frames of split_clips, so a split's samples need no array of their own.
    split_clips: NDArray[np.int32]
    split_starts: NDArray[np.int64]  # (len(SPLITS) + 1,)
    split_sample_offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def samples(self, split: str | None) -> SplitSamples:
        """The samples (labelled frames) of ``split`` (None: every split, in manifest order) as views on
        these arrays: what :meth:`select` gives, without copying anything."""
        if split is None:
            return SplitSamples(self, None, self.frame_offsets)
        code = SPLITS.index(split)
        start, stop = int(self.split_starts[code]), int(self.split_starts[code + 1])
        return SplitSamples(self, self.split_clips[start:stop], self.split_sample_offsets[start : stop + 1])

    def select(self, split: str | None) -> ManifestColumns:
        """Only the clips of ``split`` (None: all of them)."""
        chosen = np.asarray(self.splits) == SPLITS.index(split) if split is not None else None
        if chosen is None or bool(chosen.all()):
            return self
        positions = np.flatnonzero(chosen).astype(np.int64)
        frame_offsets = np.asarray(self.frame_offsets)
        counts = np.diff(frame_offsets)[positions]
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = frame_offsets[positions]
        frame_pos = np.repeat(starts - offsets[:-1], counts) + np.arange(int(offsets[-1]), dtype=np.int64)
        return make_columns(
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
        """Size of the arrays (of a local index, on disk: none of it is held)."""
        arrays = (
            self.sha256, self.annotation_versions, self.splits, self.frame_offsets, self.frames,
            self.split_clips, self.split_starts, self.split_sample_offsets,
        )  # fmt: skip
        return self.clip_ids.nbytes + self.uris.nbytes + sum(int(a.nbytes) for a in arrays)


def make_columns(
    *,
    clip_ids: PackedStrings,
    uris: PackedStrings,
    sha256: NDArray[np.uint8],
    annotation_versions: NDArray[np.int32],
    splits: NDArray[np.int8],
    frame_offsets: NDArray[np.int64],
    frames: NDArray[np.int32],
) -> ManifestColumns:
    """:class:`ManifestColumns` from the per-clip arrays, with the per-split arrays computed from them."""
    split_clips = np.argsort(splits, kind="stable").astype(np.int32)
    counts = np.bincount(splits.astype(np.int64), minlength=len(SPLITS))[: len(SPLITS)]
    split_starts = np.zeros(len(SPLITS) + 1, dtype=np.int64)
    np.cumsum(counts, out=split_starts[1:])
    split_sample_offsets = np.zeros(len(split_clips) + 1, dtype=np.int64)
    np.cumsum(np.diff(frame_offsets)[split_clips], out=split_sample_offsets[1:])
    return ManifestColumns(
        clip_ids=clip_ids,
        uris=uris,
        sha256=sha256,
        annotation_versions=annotation_versions,
        splits=splits,
        frame_offsets=frame_offsets,
        frames=frames,
        split_clips=split_clips,
        split_starts=split_starts,
        split_sample_offsets=split_sample_offsets,
    )


class SplitSamples:
    """The samples of one split: sample ``i`` is a labelled frame of one of its clips, in the order
    :meth:`ManifestColumns.select` gives them (clips in manifest order, each clip's frames in order).

    Only views on the columns' arrays (file arrays stay unread): a sample's clip is found by a
    binary search over the running frame counts (``offsets``, whose first value need not be 0).
    """

    def __init__(
        self, columns: ManifestColumns, positions: NDArray[np.int32] | None, offsets: NDArray[np.int64]
    ) -> None:
        """``positions``: the split's clips (None: every clip); ``offsets``: running frame counts (n + 1)."""
        self.columns = columns
        self.positions = positions
        self.offsets = offsets
        self._first = int(offsets[0])
        self._len = int(offsets[-1]) - self._first

    def __len__(self) -> int:
        return self._len

    @property
    def n_clips(self) -> int:
        """Number of clips in the split."""
        return int(self.offsets.shape[0]) - 1

    def locate(self, index: int) -> tuple[int, int]:
        """``(clip position in the columns, frame index)`` of sample ``index``; IndexError outside
        ``0 <= index < len``."""
        if not 0 <= index < self._len:
            raise IndexError(f"sample {index} out of range for a split of {self._len} frames")
        target = self._first + index
        # The last clip whose running count is <= target: clips with no frames share their successor's
        # count and are skipped by side="right".
        k = search_right(self.offsets, target) - 1
        position = k if self.positions is None else int(self.positions[k])
        frame_at = int(self.columns.frame_offsets[position]) + target - int(self.offsets[k])
        return position, int(self.columns.frames[frame_at])


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
        split_clips=columns.split_clips,
        split_starts=columns.split_starts,
        split_sample_offsets=columns.split_sample_offsets,
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
    arrays: dict[str, Any] | None
    try:
        local = store.local_file(index_key(key))
        arrays = npz_file_arrays(str(local)) if local is not None and local.is_file() else None
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
            split_clips=arrays["split_clips"],
            split_starts=arrays["split_starts"],
            split_sample_offsets=arrays["split_sample_offsets"],
        )
    except KeyError as exc:
        log.warning("ignoring the index of %s: it lacks %s", key, exc)
        return None
    problem = _inconsistency(columns)
    if problem:
        log.warning("ignoring the index of %s: %s", key, problem)
        return None
    return columns


def _chunks(n: int) -> range:
    return range(0, n, _CHECK_CHUNK)


def _offsets_problem(offsets: NDArray[np.int64], n: int, total: int) -> bool:
    """Whether ``offsets`` are not ``n + 1`` non-decreasing int64 values from 0 to ``total``."""
    if (
        offsets.dtype != np.int64
        or offsets.shape != (n + 1,)
        or int(offsets[0]) != 0
        or int(offsets[-1]) != total
    ):
        return True
    # In steps (each overlapping the next by one value): the check reads the array once and
    # allocates no temporary the size of the manifest.
    return any(bool((np.diff(offsets[s : s + _CHECK_CHUNK + 1]) < 0).any()) for s in _chunks(n))


def _gather(values: Any, positions: NDArray[np.int64]) -> NDArray[Any]:
    """``values[positions]`` for positions in ``[0, len(values))``, reading only the range they span."""
    if not len(positions):
        return np.zeros(0, dtype=values.dtype)
    low, high = int(positions.min()), int(positions.max()) + 1
    return np.asarray(values[low:high])[positions - low]


def _split_problem(c: ManifestColumns, n: int) -> bool:
    """Whether the per-split arrays are not exactly those :func:`make_columns` computes from ``c``'s clips.

    Each split's range of ``split_clips`` must be strictly increasing positions of clips of that split,
    the ranges must cover all ``n`` clips, and ``split_sample_offsets`` must count their frames: so the
    ranges are every clip of each split, in manifest order, and the counts are theirs.
    """
    starts, clips, counts = c.split_starts, c.split_clips, c.split_sample_offsets
    if starts.dtype != np.int64 or starts.shape != (len(SPLITS) + 1,) or clips.dtype != np.int32:
        return True
    if clips.shape != (n,) or _offsets_problem(starts, len(SPLITS), n) or counts.shape != (n + 1,):
        return True
    if counts.dtype != np.int64 or int(counts[0]) != 0 or int(counts[-1]) != int(c.frame_offsets[-1]):
        return True
    for code in range(len(SPLITS)):
        first, stop = int(starts[code]), int(starts[code + 1])
        for s in range(first, stop, _CHECK_CHUNK):
            part = np.asarray(clips[s : min(s + _CHECK_CHUNK + 1, stop)]).astype(np.int64)
            if bool(((part < 0) | (part >= n)).any()) or bool((np.diff(part) <= 0).any()):
                return True
            if bool((_gather(c.splits, part) != code).any()):
                return True
    for s in _chunks(n):
        part = np.asarray(clips[s : s + _CHECK_CHUNK]).astype(np.int64)
        if bool(((part < 0) | (part >= n)).any()):
            return True
        low = int(part.min()) if len(part) else 0
        frames = np.diff(np.asarray(c.frame_offsets[low : int(part.max(initial=0)) + 2]))[part - low]
        if not np.array_equal(np.diff(counts[s : s + _CHECK_CHUNK + 1]), frames):
            return True
    return False


def _inconsistency(c: ManifestColumns) -> str | None:
    """What is wrong with the arrays of an index (types, shapes, offsets, split codes, per-split arrays);
    None if nothing."""
    if c.clip_ids.offsets.ndim != 1 or c.clip_ids.offsets.shape[0] == 0:
        return "inconsistent clip ids"
    n = int(c.clip_ids.offsets.shape[0]) - 1
    checks: dict[str, Callable[[], bool]] = {
        "clip ids": lambda: (
            c.clip_ids.data.dtype != np.uint8
            or c.clip_ids.data.ndim != 1
            or _offsets_problem(c.clip_ids.offsets, n, c.clip_ids.data.shape[0])
        ),
        "uris": lambda: (
            c.uris.data.dtype != np.uint8
            or c.uris.data.ndim != 1
            or _offsets_problem(c.uris.offsets, n, c.uris.data.shape[0])
        ),
        "sha256": lambda: c.sha256.dtype != np.uint8 or c.sha256.shape != (n, 32),
        "annotation versions": lambda: (
            c.annotation_versions.dtype != np.int32 or c.annotation_versions.shape != (n,)
        ),
        "splits": lambda: (
            c.splits.dtype != np.int8
            or c.splits.shape != (n,)
            or any(
                bool(((p < 0) | (p >= len(SPLITS))).any())
                for p in (np.asarray(c.splits[s : s + _CHECK_CHUNK]) for s in _chunks(n))
            )
        ),
        "frames": lambda: (
            c.frames.dtype != np.int32
            or c.frames.ndim != 1
            or _offsets_problem(c.frame_offsets, n, c.frames.shape[0])
        ),
    }
    bad = [name for name, wrong in checks.items() if wrong()]
    if not bad and _split_problem(c, n):  # it reads the splits and frame offsets checked above
        bad.append("per-split arrays")
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
    return make_columns(
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
    return make_columns(
        clip_ids=PackedStrings.pack([e.clip_id.encode() for e in entries]),
        uris=PackedStrings.pack([e.uri.encode() for e in entries]),
        sha256=_sha_array([e.sha256.encode() for e in entries], source),
        annotation_versions=np.array([e.annotation_version for e in entries], dtype=np.int32),
        splits=np.array([SPLITS.index(e.split) for e in entries], dtype=np.int8),
        frame_offsets=offsets,
        frames=np.array([f for e in entries for f in e.frames], dtype=np.int32),
    )
