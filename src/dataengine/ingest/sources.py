"""Where an input video is (a store key or a local file), its sha256, and what its path says.

Landing paths follow ``{landing}/{camera}/{YYYY-MM-DD}/{HHMMSS}.{ext}``; recording times in paths are UTC.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from dataengine.errors import InputRejectedError, StorageError
from dataengine.storage import ObjectStore

_HASH_CHUNK_BYTES = 1 << 20
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{6}$")


@dataclass(frozen=True, slots=True)
class VideoSource:
    """An input video: a key in the store, or a local file outside it (read in place)."""

    uri: str
    key: str | None = None
    path: Path | None = None

    @contextmanager
    def open(self, store: ObjectStore) -> Iterator[IO[bytes]]:
        """A binary file object for streaming reads."""
        if self.key is not None:
            with store.open_read(self.key) as handle:
                yield handle
        else:
            assert self.path is not None
            with open(self.path, "rb") as handle:
                yield handle

    @contextmanager
    def local_file(self, store: ObjectStore) -> Iterator[Path]:
        """A local file with the video's bytes (a temporary download for remote stores)."""
        if self.key is not None:
            with store.local_path(self.key) as path:
                yield path
        else:
            assert self.path is not None
            yield self.path


def resolve_input(store: ObjectStore, raw: str) -> VideoSource:
    """The source named by a store key, a store URI or a local path; missing inputs are rejected."""
    if raw.startswith(store.url + "/"):
        return _store_source(store, store.key_of(raw), raw)
    if raw.startswith("file://"):
        return _local_source(store, Path(raw.removeprefix("file://")), raw)
    if "://" in raw:
        raise InputRejectedError(raw, f"{raw} is neither inside the store {store.url} nor a local file")
    if not Path(raw).is_absolute():
        try:
            if store.exists(raw):
                return _store_source(store, raw, raw)
        except StorageError:
            pass  # Not a valid key: it can still be a local path.
    return _local_source(store, Path(raw), raw)


def _store_source(store: ObjectStore, key: str, raw: str) -> VideoSource:
    if not store.exists(key):
        raise InputRejectedError(raw, f"{store.uri(key)} does not exist")
    return VideoSource(uri=store.uri(key), key=key)


def _local_source(store: ObjectStore, path: Path, raw: str) -> VideoSource:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise InputRejectedError(raw, f"{path} does not exist or is not a file")
    if store.protocol == "file" and path.is_relative_to(store.root):
        return _store_source(store, path.relative_to(store.root).as_posix(), raw)
    return VideoSource(uri=f"file://{path}", path=path)


def source_sha256(store: ObjectStore, source: VideoSource) -> str:
    """Hex SHA-256 of the source's bytes, streamed in chunks."""
    digest = hashlib.sha256()
    with source.open(store) as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def recording_info(source: VideoSource, *, landing_prefix: str) -> tuple[str | None, datetime | None]:
    """Camera and UTC recording time from ``{camera}/{YYYY-MM-DD}/{HHMMSS}.ext``; None where not matched."""
    if source.key is not None:
        parts = source.key.split("/")
    else:
        assert source.path is not None
        parts = list(source.path.parts)
    landing = [part for part in landing_prefix.strip("/").split("/") if part]
    under_landing = source.key is not None and parts[: len(landing)] == landing
    if under_landing:
        parts = parts[len(landing) :]
    folders, stem = parts[:-1], parts[-1].split(".", 1)[0]
    if folders and _DAY.match(folders[-1]):
        camera = folders[-2] if len(folders) >= 2 else None
        return camera, _timestamp(folders[-1], stem)
    return (folders[0] if under_landing and folders else None), None


def _timestamp(day: str, stem: str) -> datetime | None:
    if not _TIME.match(stem):
        return None
    try:
        return datetime.strptime(f"{day} {stem}", "%Y-%m-%d %H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
