"""Arrays read from a file on demand with ``pread``: nothing is mapped and nothing is held.

The manifest index's arrays grow with the data (about 230 bytes per clip). Memory-mapping them kept them
out of anonymous memory, but every page a process touches through a mapping counts in its RSS, and on
current kernels a fault maps the whole page-cache folio around the page: an index written in one go
sits in large folios, so each sample a DataLoader worker looked up added about 1 MB of RSS (measured:
300 random reads of a freshly written 394 MB index added 290 MB of RssFile). ``pread`` copies only the
bytes asked for into a small buffer; the file's pages stay in the page cache, shared and evictable,
and count in no process's RSS.

A :class:`FileArray` is a 1-D or 2-D view on one ``.npy`` member of an uncompressed ``.npz``: an integer
index reads one item (a row for 2-D), a slice with step 1 is another lazy view, and anything numpy needs
the data for (``np.asarray``, ``np.diff``, fancy indexes) reads the viewed range, so callers use it
where they would use an array and read only what they index.

A file array can be *checked* (:meth:`FileArray.checked`): its member's bytes are cut into blocks of a
few KB whose CRC-32s, recorded when the file was written, are another (unchecked) member; every read then
reads the whole blocks it touches and compares their CRC-32s before returning anything, so bytes damaged
since the file was written raise :class:`ChecksumError` at the read that meets them, at the cost of
reading whole blocks (about 3 µs a 4 KB block here) instead of only the bytes asked for.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

#: Checked blocks kept per array and process (4 KB each): the first steps of every binary search.
CACHED_BLOCKS = 128
_STRUCT_CODES = {"<i8": "<q", "<i4": "<i", "<i2": "<h", "|i1": "b", "<u8": "<Q", "<u4": "<I", "|u1": "B"}


class ChecksumError(OSError):
    """Bytes read from a checked :class:`FileArray` do not match the CRC-32 recorded for their block."""


class _SharedFile:
    """A file opened read-only once; forked processes share the descriptor (``pread`` moves no offset),
    so they read the very file that was checked, even if the path has since been replaced."""

    def __init__(self, handle: BinaryIO, path: str) -> None:
        self.path = path
        self._handle = handle

    def pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self._handle.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"{self.path}: short read of {size} bytes at {offset} (the file shrank?)")
        return data

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled in another process (a spawned worker): the path's file, as it is now.
        self.path = state["path"]
        self._handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 (held for the array's life)


class FileArray:
    """Rows ``start:stop`` of a C-ordered array stored at byte ``offset`` of a file."""

    def __init__(
        self,
        file: _SharedFile,
        offset: int,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        *,
        name: str = "",
        check: _BlockCheck | None = None,
    ) -> None:
        """The array of ``dtype`` and ``shape`` (1-D or 2-D) at byte ``offset`` of ``file``; ``name`` (its
        member's) is for messages; ``check`` verifies the member's blocks (:meth:`checked`)."""
        self._file = file
        self._offset = offset
        self.name = name
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (1, 2):
            raise ValueError(f"{self._file.path}: a file array has 1 or 2 dimensions, not {self.shape}")
        self._row = self.dtype.itemsize * (self.shape[1] if len(self.shape) == 2 else 1)
        self._check = check
        self._set_unpack()

    def _set_unpack(self) -> None:
        # One item of a 1-D integer array is unpacked straight to an int: a lookup reads a few dozen.
        code = _STRUCT_CODES.get(self.dtype.str) if len(self.shape) == 1 else None
        self._unpack = struct.Struct(code).unpack_from if code else None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_unpack"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._set_unpack()

    @property
    def path(self) -> str:
        """The file's path."""
        return self._file.path

    def checked(self, crc32: FileArray, block: int) -> FileArray:
        """This whole member, each read verified: ``crc32`` (uint32, one per ``block`` bytes of the member,
        the last block short) holds the CRC-32 of each block. ValueError if its shape does not fit."""
        expected = -(-self.nbytes // block) if block > 0 else -1
        if crc32.dtype != np.uint32 or crc32.shape != (expected,):
            raise ValueError(
                f"{self._file.path}: {crc32.name} is not one CRC-32 per {block} bytes of {self.name} "
                f"({crc32.dtype} {crc32.shape} for {self.nbytes} bytes)"
            )
        check = _BlockCheck(crc32, block, start=self._offset, size=self.nbytes)
        return FileArray(self._file, self._offset, self.dtype, self.shape, name=self.name, check=check)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the data in the file (none of it is held)."""
        return self._row * self.shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int = 0, stop: int | None = None) -> NDArray[Any]:
        """Rows ``start:stop`` (clipped to the array) as a new read-only in-memory array."""
        n = self.shape[0]
        stop = n if stop is None else max(0, min(stop, n))
        start = max(0, min(start, stop))
        count = stop - start
        offset, size = self._offset + start * self._row, count * self._row
        if not count:
            data: bytes | memoryview = b""
        elif self._check is not None:
            data = self._check.read(self._file, offset, size, self.name)
        else:
            data = self._file.pread(size, offset)
        # Read-only, over the bytes object just read: no second copy.
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.shape[1:]))

    def __getitem__(self, key: Any) -> Any:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            index = int(key) + n if int(key) < 0 else int(key)
            if not 0 <= index < n:
                raise IndexError(f"index {int(key)} out of range for {n} rows")
            if self._unpack is not None:
                offset = self._offset + index * self._row
                if self._check is None:
                    return self._unpack(self._file.pread(self._row, offset))[0]
                data, at = self._check.block_of(self._file, offset, self.name)
                return self._unpack(data, at)[0]
            row = self.read(index, index + 1)[0]
            return row if self.ndim == 2 else row[()]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(n)
            stop = max(start, stop)
            return FileArray(
                self._file, self._offset + start * self._row, self.dtype, (stop - start, *self.shape[1:]),
                name=self.name, check=self._check,
            )  # fmt: skip
        return self.read()[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> NDArray[Any]:
        data = self.read()
        return data if dtype is None else data.astype(dtype)

    def tobytes(self) -> bytes:
        """The viewed bytes."""
        return self.read().tobytes()

    def tolist(self) -> Any:
        """The viewed values as Python objects."""
        return self.read().tolist()


class _BlockCheck:
    """The CRC-32s of the ``block``-byte blocks of one member (``size`` bytes at file offset ``start``),
    and the last :data:`CACHED_BLOCKS` blocks checked: a binary search reads the same few blocks first
    every time (the middle, the quarters...), which are then neither read nor checked again."""

    def __init__(self, crc32: FileArray, block: int, *, start: int, size: int) -> None:
        self.crc32, self.block, self.start, self.size = crc32, block, start, size
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}  # a spawned worker checks its own blocks

    def read(self, file: _SharedFile, offset: int, size: int, name: str) -> memoryview:
        """``size`` bytes at file ``offset`` (inside the member), after checking every block they touch."""
        first = (offset - self.start) // self.block
        last = (offset + size - self.start - 1) // self.block
        begin = self.start + first * self.block
        if first == last:
            data, at = self.block_of(file, offset, name)
            return memoryview(data)[at : at + size]
        data = self._checked(file, first, last, name)
        return memoryview(data)[offset - begin : offset - begin + size]

    def block_of(self, file: _SharedFile, offset: int, name: str) -> tuple[bytes, int]:
        """The checked block holding file ``offset`` and the offset's position in it (the caller reads
        no further than the block)."""
        index = (offset - self.start) // self.block
        data = self._cache.get(index)
        if data is None:
            data = self._checked(file, index, index, name)
            self._cache[index] = data
            if len(self._cache) > CACHED_BLOCKS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return data, offset - self.start - index * self.block

    def _checked(self, file: _SharedFile, first: int, last: int, name: str) -> bytes:
        """Blocks ``first`` to ``last`` (inclusive), read and checked."""
        begin = self.start + first * self.block
        data = file.pread(min(self.start + self.size, self.start + (last + 1) * self.block) - begin, begin)
        expected = self.crc32.read(first, last + 1)
        view = memoryview(data)
        for i in range(last + 1 - first):
            if zlib.crc32(view[i * self.block : (i + 1) * self.block]) != int(expected[i]):
                lo = (first + i) * self.block
                raise ChecksumError(
                    f"{file.path}: bytes {lo}-{min(lo + self.block, self.size) - 1} of {name} do not match "
                    "the CRC-32 recorded when the file was written (damaged since)"
                )
        return data


AnyArray = NDArray[Any] | FileArray


def values_at(values: AnyArray, start: int, stop: int) -> list[Any]:
    """``values[start:stop]`` as Python values, from an array or (one read) a :class:`FileArray`."""
    found: list[Any] = (
        values.read(start, stop) if isinstance(values, FileArray) else values[start:stop]
    ).tolist()
    return found


def search_right(values: AnyArray, target: int) -> int:
    """``np.searchsorted(values, target, side="right")`` for a sorted 1-D array or :class:`FileArray`:
    a binary search that reads one value per step from a file array, then the last page at once.

    On an array that is not sorted (a damaged one) it still ends at a position ``p`` with
    ``values[p - 1] <= target < values[p]`` (where those exist): each step keeps that true of its range.
    """
    if not isinstance(values, FileArray):
        return int(np.searchsorted(values, target, side="right"))
    low, high = 0, len(values)
    # Once the range fits in a page it is read at once and searched in memory.
    span = max(1, 4096 // values.dtype.itemsize)
    while high - low > span:
        middle = (low + high) // 2
        if int(values[middle]) <= target:
            low = middle + 1
        else:
            high = middle
    return low + int(np.searchsorted(values.read(low, high), target, side="right"))


def npz_file_arrays(path: str) -> dict[str, Any] | None:
    """The members of the uncompressed ``.npz`` at ``path`` as :class:`FileArray` views of one open
    descriptor; None when it is not a plain uncompressed archive of C-ordered ``.npy`` members of 1 or 2
    dimensions (the caller then reads it whole). Raises OSError when it cannot be opened, ValueError when
    its headers disagree."""
    import struct
    import zipfile

    handle = open(path, "rb", buffering=0)  # noqa: SIM115 (kept open by the arrays)
    shared = _SharedFile(handle, path)
    arrays: dict[str, FileArray] = {}
    with zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
            return None
        local = shared.pread(30, info.header_offset)
        if local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        if shared.pread(name_length, info.header_offset + 30) != info.filename.encode():
            raise ValueError(f"{info.filename}: its local header disagrees with the zip directory")
        if not _local_header_agrees(local, info):
            raise ValueError(f"{info.filename}: its local header disagrees with the zip directory")
        start = info.header_offset + 30 + name_length + extra_length
        header = _NpyHeader(shared, start)
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(header)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(header)
        else:
            return None
        if dtype.hasobject or len(shape) not in (1, 2) or (fortran and len(shape) > 1):
            return None
        name = info.filename.removesuffix(".npy")
        arrays[name] = FileArray(shared, start + header.position, dtype, shape, name=name)
    return arrays


class _NpyHeader:
    """A file-like reader of a ``.npy`` header at ``start`` (what numpy's header parser reads from)."""

    def __init__(self, file: _SharedFile, start: int) -> None:
        self._file, self._start, self.position = file, start, 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            raise ValueError("a .npy header is read in known sizes")
        data = self._file.pread(size, self._start + self.position)
        self.position += size
        return data


def _local_header_agrees(local: bytes, info: Any) -> bool:
    """Whether a member's local header gives the CRC and sizes of the central directory (unless it
    defers them to a data descriptor or to zip64 fields)."""
    import struct

    flags, crc, compressed, size = struct.unpack("<H6xIII", local[6:26])
    if flags & 0x08:
        return True
    if crc != info.CRC:
        return False
    return compressed in (info.compress_size, 0xFFFFFFFF) and size in (info.file_size, 0xFFFFFFFF)
