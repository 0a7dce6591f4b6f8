"""A manifest as a few flat numpy arrays, for the per-clip Dataset.

DataLoader workers are forked from the process that built the Dataset. A Python list of strings or dicts
has one refcounted object per item, and merely reading an item writes its refcount, so every worker
slowly copies every page it touches (pytorch/pytorch#13246). Numpy arrays of bytes have no per-item
objects: the pages stay shared. Strings are packed as one byte buffer plus offsets.

Manifests are written in one canonical form (sorted keys, compact separators, no escapes), which is read
column by column with a regular expression per field; anything else falls back to ``json.loads`` per line.

Parsing a manifest of 170,000 clips still takes about a second, so the build also writes these arrays
next to it, ``manifest.index.npz`` (:func:`index_key`), tagged with the SHA-256 of the manifest's bytes
(and its fingerprint, so that an unchanged manifest need not be hashed). :func:`read_manifest_columns`
loads the index only when the tags match and its arrays' types, shapes and end points are right;
otherwise it parses the manifest and writes the index again. A stale or foreign index is therefore never
used, only ignored, and so is one whose damage shows at load.

The rest of the checks are made where each item is read, so that loading costs the same whatever the
manifest's size (at 17M frames the whole-array checks took 0.2-0.4 s): every block of a local index that
is read is checked against the CRC-32 recorded for it when it was written (``file_arrays``), and each
sample's lookup checks the items it reads (:meth:`SplitSamples.locate`: the running counts around it in
order, its clip in the split and between its neighbours, the clip's frame count in both arrays). Damage
found there raises :class:`IndexDamagedError`, naming the index and the problem: never a wrong sample.

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
import itertools
import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataengine.errors import FormatError, IndexDamagedError, ObjectNotFoundError, StorageError
from dataengine.storage import ObjectStore
from dataengine.training.file_arrays import ChecksumError, npz_file_arrays, search_right, values_at
from dataengine.training.manifest import SPLITS, parse_manifest

log = logging.getLogger(__name__)

#: Bumped whenever the arrays of the index change meaning; an index of another format is ignored.
#: 2: the per-split arrays (``split_clips``, ``split_starts``, ``split_sample_offsets``) were added.
#: 3: each array's blocks' CRC-32s (``{name}__crc32``, blocks of ``crc_block`` bytes) were added.
INDEX_FORMAT = 3
_INDEX_SUFFIX = ".index.npz"
_HASH_CHUNK = 8 * 2**20
#: Bytes per checked block of an index array: a page, so a lookup reads about what a mapping faulted in.
CRC_BLOCK = 4096
_CRC_SUFFIX = "__crc32"

_FIELD = {name: re.compile(rb'"' + name.encode() + rb'":"([^"]*)"') for name in ("clip_id", "uri", "sha256")}
_SPLIT = re.compile(rb'"split":"([^"]*)"')
_VERSION = re.compile(rb'"annotation_version":(-?[0-9]+)')
_FRAMES = re.compile(rb'"frames":\[([0-9,\s]*)\]')


class PackedStrings:
    """Many short strings in two arrays: UTF-8 bytes (uint8) and ``n + 1`` offsets (int64)."""

    def __init__(self, data: NDArray[np.uint8], offsets: NDArray[np.int64], *, origin: str = "") -> None:
        """Wrap packed bytes; string ``i`` is ``data[offsets[i]:offsets[i + 1]]``. ``origin`` names the
        index they come from, for :class:`IndexDamagedError` (empty: parsed, not read from an index)."""
        self.data = data
        self.offsets = offsets
        self.origin = origin

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
        if not -len(self) <= index < len(self):
            raise IndexError(f"string {index} out of range for {len(self)} strings")
        index %= len(self)
        with reading(self.origin, f"string {index}"):
            start, end = values_at(self.offsets, index, index + 2)
            if not 0 <= start <= end <= len(self.data):
                raise _DamageError(f"string {index}'s offsets are out of order or range ({start}, {end})")
            try:
                return self.data[start:end].tobytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _DamageError(f"string {index} is not UTF-8 ({exc})") from exc

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
    # The index the arrays were read from, for IndexDamagedError; empty when they were parsed.
    origin: str = ""

    def __len__(self) -> int:
        return len(self.clip_ids)

    def samples(self, split: str | None) -> SplitSamples:
        """The samples (labelled frames) of ``split`` (None: every split, in manifest order) as views on
        these arrays: what :meth:`select` gives, without copying anything."""
        if split is None:
            return SplitSamples(self, None, self.frame_offsets)
        code = SPLITS.index(split)
        with reading(self.origin, f"the {split} split"):
            start, stop = values_at(self.split_starts, code, code + 2)
            return SplitSamples(
                self, self.split_clips[start:stop], self.split_sample_offsets[start : stop + 1], code=code
            )

    def select(self, split: str | None) -> ManifestColumns:
        """Only the clips of ``split`` (None: all of them), read whole (so every block read is checked)."""
        with reading(self.origin, f"the {split} split"):
            return self._select(split)

    def _select(self, split: str | None) -> ManifestColumns:
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

    def damaged(self, problem: str) -> IndexDamagedError:
        """The error for ``problem`` found in these columns, naming their index."""
        return _damaged_error(self.origin, problem)

    def sha256_hex(self, position: int) -> str:
        """The SHA-256 of clip ``position``'s annotation file, as hex."""
        with reading(self.origin, f"the sha256 of clip {position}"):
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
    binary search over the running frame counts (``offsets``, whose first value need not be 0), and the
    items the lookup reads are checked there (an index's arrays are not checked whole at load).
    """

    def __init__(
        self,
        columns: ManifestColumns,
        positions: NDArray[np.int32] | None,
        offsets: NDArray[np.int64],
        *,
        code: int | None = None,
    ) -> None:
        """``positions``: the split's clips (None: every clip); ``offsets``: running frame counts (n + 1);
        ``code``: the split's code (None: every clip)."""
        self.columns = columns
        self.positions = positions
        self.offsets = offsets
        self.code = code
        self._what = "the manifest" if code is None else f"the {SPLITS[code]} split"
        with reading(columns.origin, self._what):
            self._first = int(offsets[0])
            self._len = int(offsets[-1]) - self._first
        if self._len < 0:
            raise columns.damaged(f"{self._what} has {self._len} frames")

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
        with reading(self.columns.origin, f"sample {index} of {self._what}"):
            # The last clip whose running count is <= target: clips with no frames share their successor's
            # count and are skipped by side="right".
            return self._checked(search_right(self.offsets, target) - 1, target)

    def _checked(self, k: int, target: int) -> tuple[int, int]:
        """The sample at running count ``target``, found in clip ``k`` of the split, after checking what
        it reads: on any array, sorted or not, a binary search ends between two counts that bracket the
        target, and with one wrong item the bracket, the clip's order and split or its frame count in the
        other array differ from what they must be (the CRC-32s catch damaged bytes, these a wrong writer).
        """
        c, n_split = self.columns, self.n_clips
        if not 0 <= k < n_split:
            raise _DamageError(f"running frame count {target} falls outside {self._what}'s {n_split} clips")
        low, high = values_at(self.offsets, k, k + 2)
        if not low <= target < high:
            raise _DamageError(f"the running frame counts of {self._what} are out of order at its clip {k}")
        if self.positions is None:
            # Every clip in manifest order: the counts are frame_offsets themselves, so the clip's count
            # is compared with the one in its split's running counts instead.
            position = k
            low, high = low, low + self._split_count(position)
        else:
            first = max(0, k - 1)
            around = values_at(self.positions, first, k + 2)
            position = around[k - first]
            if any(a >= b for a, b in itertools.pairwise(around)):
                raise _DamageError(f"the clips of {self._what} are not in manifest order at its clip {k}")
            if not 0 <= position < len(c):
                raise _DamageError(f"{self._what}'s clip {k} is clip {position}, of {len(c)}")
            code = int(c.splits[position])
            if code != self.code:
                found = SPLITS[code] if 0 <= code < len(SPLITS) else f"code {code}"
                raise _DamageError(f"clip {position} is listed in {self._what} but its split is {found}")
        start, stop = values_at(c.frame_offsets, position, position + 2)
        if not 0 <= start <= stop <= len(c.frames):
            raise _DamageError(f"clip {position}'s frame offsets are out of order or range ({start}, {stop})")
        if stop - start != high - low:
            raise _DamageError(
                f"clip {position} has {stop - start} frames in frame_offsets and {high - low} in the "
                f"running counts of {self._what}"
            )
        frame = int(c.frames[start + target - low])
        if frame < 0:
            raise _DamageError(f"clip {position} lists frame {frame}")
        return position, frame

    def _split_count(self, position: int) -> int:
        """Clip ``position``'s frame count in the running counts of its split (a binary search of the
        split's clips, which are in manifest order)."""
        c = self.columns
        code = int(c.splits[position])
        if not 0 <= code < len(SPLITS):
            raise _DamageError(f"clip {position} has split code {code}")
        first, stop = values_at(c.split_starts, code, code + 2)
        k = first + search_right(c.split_clips[first:stop], position) - 1
        if k < first or int(c.split_clips[k]) != position:
            raise _DamageError(f"clip {position} is not among the clips of the {SPLITS[code]} split")
        low, high = values_at(c.split_sample_offsets, k, k + 2)
        return int(high) - int(low)


class _DamageError(Exception):
    """An item read from an index is inconsistent (becomes :class:`IndexDamagedError`)."""


@contextmanager
def reading(origin: str, what: str) -> Iterator[None]:
    """Reads from columns of ``origin`` (an index, or "" if parsed): an inconsistent item or damaged,
    unreadable bytes become :class:`IndexDamagedError`, naming the index and what was being read."""
    try:
        yield
    except (_DamageError, ChecksumError) as exc:
        raise _damaged_error(origin, f"reading {what}: {exc}") from exc
    except OSError as exc:
        if not origin:
            raise
        raise _damaged_error(origin, f"reading {what}: {type(exc).__name__}: {exc}") from exc


def _damaged_error(origin: str, problem: str) -> IndexDamagedError:
    if not origin:  # parsed columns are built consistent: this would be a bug, not damage
        return IndexDamagedError(f"manifest columns inconsistent: {problem}")
    return IndexDamagedError(
        f"{origin}: this manifest index is damaged ({problem}). It is derived data: delete it, and the "
        "next reader parses the manifest and writes it again"
    )


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

    One uncompressed ``.npz`` (a zip of ``.npy`` files, each CRC-checked when read whole), with the CRC-32
    of each :data:`CRC_BLOCK` bytes of every array (a reader on a local store checks the blocks it reads),
    written atomically by the store: a reader sees the old index, the new one or none, never half of one.
    """
    buffer = io.BytesIO()
    arrays: dict[str, Any] = with_block_crc32(index_arrays(columns, manifest_sha256, fingerprint))
    np.savez(buffer, **arrays)
    store.write_bytes(index_key(key), buffer.getvalue())


def index_arrays(
    columns: ManifestColumns, manifest_sha256: bytes, fingerprint: bytes | None
) -> dict[str, NDArray[Any]]:
    """The arrays an index holds, by member name (without the CRC-32s)."""
    arrays = dict(
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
    return {name: np.ascontiguousarray(array) for name, array in arrays.items()}


def with_block_crc32(arrays: dict[str, NDArray[Any]], block: int = CRC_BLOCK) -> dict[str, NDArray[Any]]:
    """``arrays`` (C-ordered) and, for each, ``{name}__crc32``: the CRC-32 of each ``block`` bytes of its
    data as ``np.save`` writes it (the last block short), with ``crc_block`` giving ``block``."""
    out = dict(arrays)
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data
        count = -(-len(data) // block)
        crcs = (zlib.crc32(data[i : i + block]) for i in range(0, len(data), block))
        out[name + _CRC_SUFFIX] = np.fromiter(crcs, dtype=np.uint32, count=count)
    out["crc_block"] = np.array([block], dtype=np.int64)
    return out


def load_index(
    store: ObjectStore, key: str, *, manifest_sha256: bytes | None = None, fingerprint: bytes | None = None
) -> ManifestColumns | None:
    """The columns in the index of the manifest at ``key``; None when there is none or it does not
    belong to a manifest with the bytes hashing to ``manifest_sha256`` (or, when that is not given,
    with the fingerprint ``fingerprint``), or its types, shapes or end points are wrong.

    Constant time on a local store (the arrays are read on demand, each block checked against its
    CRC-32); the items are checked where they are read (:class:`SplitSamples`), an error then naming
    the index (:class:`IndexDamagedError`).
    """
    if manifest_sha256 is None and not fingerprint:
        return None
    arrays: dict[str, Any] | None
    origin = store.uri(index_key(key))
    try:
        local = store.local_file(index_key(key))
        arrays = npz_file_arrays(str(local)) if local is not None and local.is_file() else None
        if arrays is not None:
            arrays = _checked_arrays(arrays)
        else:  # read whole: the zip's CRC-32s are checked as each member is read
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
            clip_ids=PackedStrings(arrays["clip_ids_data"], arrays["clip_ids_offsets"], origin=origin),
            uris=PackedStrings(arrays["uris_data"], arrays["uris_offsets"], origin=origin),
            sha256=arrays["sha256"],
            annotation_versions=arrays["annotation_versions"],
            splits=arrays["splits"],
            frame_offsets=arrays["frame_offsets"],
            frames=arrays["frames"],
            split_clips=arrays["split_clips"],
            split_starts=arrays["split_starts"],
            split_sample_offsets=arrays["split_sample_offsets"],
            origin=origin,
        )
        problem = _load_problem(columns)
    except KeyError as exc:
        log.warning("ignoring the index of %s: it lacks %s", key, exc)
        return None
    except (OSError, ValueError, IndexError) as exc:  # ChecksumError, a short read: damaged bytes
        log.warning("ignoring the damaged index of %s: %s: %s", key, type(exc).__name__, exc)
        return None
    if problem:
        log.warning("ignoring the index of %s: %s", key, problem)
        return None
    return columns


#: The members of a format-3 index whose blocks have CRC-32s (every one but those and ``crc_block``).
_CHECKED_MEMBERS = (
    "format", "manifest_sha256", "manifest_fingerprint", "clip_ids_data", "clip_ids_offsets", "uris_data",
    "uris_offsets", "sha256", "annotation_versions", "splits", "frame_offsets", "frames", "split_clips",
    "split_starts", "split_sample_offsets",
)  # fmt: skip


def _checked_arrays(arrays: dict[str, Any]) -> dict[str, Any]:
    """The file arrays of an index, each read checked against its blocks' CRC-32s (an index of another
    format, which has none, is returned as it is: it is then ignored for its format)."""
    if "crc_block" not in arrays:
        return arrays
    block = int(arrays["crc_block"][0])
    if not 0 < block <= 1 << 24:
        raise ValueError(f"crc_block is {block}")
    checked = dict(arrays)
    for name in _CHECKED_MEMBERS:
        checked[name] = arrays[name].checked(arrays[name + _CRC_SUFFIX], block)
    return checked


def _load_problem(c: ManifestColumns) -> str | None:
    """What is wrong with an index's types, shapes and end points (a few reads whatever its size): the
    checks made at load; the items are checked where they are read. None if nothing."""
    n_splits = len(SPLITS)
    if c.clip_ids.offsets.ndim != 1 or c.clip_ids.offsets.shape[0] == 0:
        return "inconsistent clip ids"
    n = int(c.clip_ids.offsets.shape[0]) - 1

    def offsets_wrong(offsets: Any, count: int, total: int) -> bool:
        return bool(
            offsets.dtype != np.int64
            or offsets.shape != (count + 1,)
            or int(offsets[0]) != 0
            or int(offsets[-1]) != total
        )

    def array_wrong(array: Any, dtype: type, shape: tuple[int, ...] | None = None) -> bool:
        return bool(array.dtype != dtype or (array.ndim != 1 if shape is None else array.shape != shape))

    def strings_wrong(strings: PackedStrings) -> bool:
        return array_wrong(strings.data, np.uint8) or offsets_wrong(strings.offsets, n, len(strings.data))

    def split_starts_wrong() -> bool:
        starts = np.asarray(c.split_starts)
        return offsets_wrong(c.split_starts, n_splits, n) or bool((np.diff(starts) < 0).any())

    def split_counts_wrong() -> bool:
        # The running counts at the splits' ends: each split's frame count is at least 0.
        ends = [int(c.split_sample_offsets[int(s)]) for s in np.asarray(c.split_starts)]
        return offsets_wrong(c.split_sample_offsets, n, len(c.frames)) or bool((np.diff(ends) < 0).any())

    wrong = {
        "clip ids": lambda: strings_wrong(c.clip_ids),
        "uris": lambda: strings_wrong(c.uris),
        "sha256": lambda: array_wrong(c.sha256, np.uint8, (n, 32)),
        "annotation versions": lambda: array_wrong(c.annotation_versions, np.int32, (n,)),
        "splits": lambda: array_wrong(c.splits, np.int8, (n,)),
        "frames": lambda: array_wrong(c.frames, np.int32) or offsets_wrong(c.frame_offsets, n, len(c.frames)),
        "split clips": lambda: array_wrong(c.split_clips, np.int32, (n,)),
        "split starts": split_starts_wrong,
        "split sample counts": split_counts_wrong,
    }
    bad = [name for name, check in wrong.items() if check()]
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
