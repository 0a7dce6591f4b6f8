"""Where an input video is (a store key or a local file), its sha256, and what its path says.

Landing paths follow a configurable pattern, by default ``{camera}/{date}/{time}.*`` under the landing
prefix (``landing/cam01/2026-11-22/081500.mp4``); recording times in paths are UTC.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from dataengine.errors import (
    ConfigError,
    InputRejectedError,
    ObjectNotFoundError,
    RetryableStorageError,
    StorageError,
)
from dataengine.storage import ObjectStore

_HASH_CHUNK_BYTES = 1 << 20


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
        """A local file with the video's bytes (a temporary download for remote stores).

        A file that is gone by now, or cannot be downloaded, is an :class:`InputRejectedError`.
        """
        if self.key is None:
            assert self.path is not None
            if not self.path.is_file():
                raise InputRejectedError(self.uri, f"{self.uri} disappeared before it could be read")
            yield self.path
            return
        with ExitStack() as stack:
            try:
                path = stack.enter_context(store.local_path(self.key))
            except StorageError as exc:
                if exc.retryable:
                    raise
                raise _unreadable(self.uri, exc) from exc
            yield path


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
        if store.is_folder(key):
            raise InputRejectedError(raw, f"{store.uri(key)} is a folder, not a video file")
        raise InputRejectedError(raw, f"{store.uri(key)} does not exist")
    return VideoSource(uri=store.uri(key), key=key)


def _local_source(store: ObjectStore, path: Path, raw: str) -> VideoSource:
    given = path.expanduser()
    if given.is_symlink() and not given.exists():
        raise InputRejectedError(raw, f"{given} is a broken symbolic link (to {os.readlink(given)})")
    path = given.resolve()
    if path.is_dir():
        raise InputRejectedError(raw, f"{path} is a directory, not a video file")
    if path.exists() and not path.is_file():
        raise InputRejectedError(raw, f"{path} is not a regular file (a pipe, socket or device)")
    if not path.is_file():
        raise InputRejectedError(raw, f"{path} does not exist or is not a file")
    key = store.key_of_path(path)
    if key is not None:
        return _store_source(store, key, raw)
    return VideoSource(uri=f"file://{path}", path=path)


def source_sha256(store: ObjectStore, source: VideoSource) -> str:
    """Hex SHA-256 of the source's bytes, streamed in chunks.

    A source that cannot be read (no permission, gone since it was listed) is an
    :class:`InputRejectedError`; a transient failure stays a retryable :class:`StorageError`.
    """
    digest = hashlib.sha256()
    try:
        with source.open(store) as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except (ConnectionError, TimeoutError) as exc:
        raise RetryableStorageError(f"{source.uri}: {exc}") from exc
    except (OSError, StorageError) as exc:
        if isinstance(exc, StorageError) and exc.retryable:
            raise
        raise _unreadable(source.uri, exc) from exc
    return digest.hexdigest()


def _unreadable(uri: str, exc: Exception) -> InputRejectedError:
    if isinstance(exc, FileNotFoundError | ObjectNotFoundError):
        return InputRejectedError(uri, f"{uri} disappeared before it could be read")
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).removeprefix(f"{uri}: ")
    return InputRejectedError(uri, f"{uri} cannot be read: {cause}")


_FIELDS = {
    "camera": r"(?P<camera>[^/]+?)",
    "date": r"(?P<date>\d{4}-?\d{2}-?\d{2})",
    "time": r"(?P<time>\d{2}[-:_]?\d{2}[-:_]?\d{2})",
    "datetime": r"(?P<datetime>\d{4}-?\d{2}-?\d{2}[T_ -]?\d{2}[-:_]?\d{2}[-:_]?\d{2})",
    "any": r"[^/]*?",
}


def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    """A regex for a landing path pattern such as ``{camera}/{date}/{time}.*``.

    Fields: ``{camera}``, ``{date}`` (YYYY-MM-DD or YYYYMMDD), ``{time}`` (HHMMSS, HH-MM-SS),
    ``{datetime}`` (date and time together, e.g. 20261122T081500) and ``{any}``; ``*`` is any text
    inside one path part. Unknown fields are a :class:`ConfigError`.
    """
    parts = re.split(r"(\{[a-z_]+\}|\*)", pattern.strip("/"))
    regex = []
    for part in parts:
        if part == "*":
            regex.append(r"[^/]*")
        elif part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name not in _FIELDS:
                raise ConfigError(
                    f"ingest_path_pattern {pattern!r} has an unknown field {part}; "
                    f"fields are {', '.join('{' + f + '}' for f in _FIELDS)}"
                )
            regex.append(_FIELDS[name])
        else:
            regex.append(re.escape(part))
    return re.compile("^" + "".join(regex) + "$")


def recording_info(
    source: VideoSource, *, landing_prefix: str, pattern: str
) -> tuple[str | None, datetime | None]:
    """Camera and UTC recording time read from the source's path with ``pattern``; None where unknown.

    The pattern is matched against the path under ``landing_prefix`` (a store key) or against the last
    parts of a local path. A landing key that does not match still names its camera by its first folder.
    """
    if source.key is not None:
        parts = source.key.split("/")
    else:
        assert source.path is not None
        parts = list(source.path.parts)
    landing = [part for part in landing_prefix.strip("/").split("/") if part]
    under_landing = source.key is not None and parts[: len(landing)] == landing
    if under_landing:
        parts = parts[len(landing) :]
    depth = pattern.strip("/").count("/") + 1
    match = compile_path_pattern(pattern).match("/".join(parts[-depth:])) if len(parts) >= depth else None
    if match is None:
        return (parts[0] if under_landing and len(parts) > 1 else None), None
    fields = match.groupdict()
    return fields.get("camera"), _timestamp(fields)


def _timestamp(fields: dict[str, str | None]) -> datetime | None:
    text = fields.get("datetime") or (
        f"{fields['date']} {fields['time']}" if fields.get("date") and fields.get("time") else None
    )
    if text is None:
        return None
    digits = re.sub(r"\D", "", text)
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
