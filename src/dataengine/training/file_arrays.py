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
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray


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

    def __init__(self, file: _SharedFile, offset: int, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        """The array of ``dtype`` and ``shape`` (1-D or 2-D) at byte ``offset`` of ``file``."""
        self._file = file
        self._offset = offset
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) not in (1, 2):
            raise ValueError(f"{self._file.path}: a file array has 1 or 2 dimensions, not {self.shape}")
        self._row = self.dtype.itemsize * (self.shape[1] if len(self.shape) == 2 else 1)

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
        data = self._file.pread(count * self._row, self._offset + start * self._row) if count else b""
        # Read-only, over the bytes object just read: no second copy.
        return np.frombuffer(data, dtype=self.dtype).reshape((count, *self.shape[1:]))

    def __getitem__(self, key: Any) -> Any:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            index = int(key) + n if int(key) < 0 else int(key)
            if not 0 <= index < n:
                raise IndexError(f"index {int(key)} out of range for {n} rows")
            row = self.read(index, index + 1)[0]
            return row if self.ndim == 2 else row[()]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(n)
            stop = max(start, stop)
            return FileArray(
                self._file, self._offset + start * self._row, self.dtype, (stop - start, *self.shape[1:])
            )
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


AnyArray = NDArray[Any] | FileArray


def search_right(values: AnyArray, target: int) -> int:
    """``np.searchsorted(values, target, side="right")`` for a sorted 1-D array or :class:`FileArray`:
    a binary search that reads one value per step from a file array."""
    if not isinstance(values, FileArray):
        return int(np.searchsorted(values, target, side="right"))
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if int(values[middle]) <= target:
            low = middle + 1
        else:
            high = middle
    return low


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
        arrays[info.filename.removesuffix(".npy")] = FileArray(shared, start + header.position, dtype, shape)
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
