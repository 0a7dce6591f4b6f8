"""Object storage over fsspec (``file://``, ``s3://``, ``memory://``) with atomic writes.

Keys are ``/``-separated paths relative to the store's root URL, e.g. ``clips/abc-0000000/meta.json``.
A write is never visible half-done: local files are written to a hidden temporary name in the same
folder and renamed into place; S3 and memory objects appear with a single PUT.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import fsspec

from dataengine.errors import (
    ConfigError,
    ObjectExistsError,
    ObjectNotFoundError,
    RetryableStorageError,
    StorageError,
)
from dataengine.redaction import mask_url

if TYPE_CHECKING:
    from dataengine.config import Settings

_TMP_PREFIX = ".tmp-"
_S3_PROTOCOLS = ("s3", "s3a")
_CONFLICT_RETRIES = 5


def _check_key(key: str) -> str:
    key = key.strip("/")
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}: use a relative path without '.' or '..'")
    return key


def _translate(exc: Exception, what: str) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFoundError(f"{what}: no such object")
    if isinstance(exc, ConnectionError | TimeoutError):
        return RetryableStorageError(f"{what}: {exc}")
    if isinstance(exc, PermissionError):
        return StorageError(f"{what}: Permission denied")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def fingerprint(info: dict[str, Any]) -> str | None:
    """``size:version`` from an object's metadata (ETag on S3, modification time on disk); None when
    the store gives no version to trust. An unchanged fingerprint means unchanged bytes."""
    version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    size = info.get("size")
    if version is None or size is None:
        return None
    return f"{size}:{str(version).strip(chr(34))}"


class ObjectStore:
    """One bucket or folder, addressed by keys."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        protocol, separator, rest = url.partition("://")
        if not separator or not protocol:
            raise ConfigError(f"storage URL {url!r} needs a scheme: file://, s3:// or memory://")
        if not rest.strip("/"):
            raise ConfigError(f"storage URL {url!r} names no bucket or folder after {protocol}://")
        if protocol == "file":
            # Resolve relative folders once, so every URI recorded in lineage is absolute.
            rest = str(Path(rest).expanduser().resolve())
            url = f"file://{rest}"
        self.protocol = protocol
        self.url = url.rstrip("/")
        self._options = dict(storage_options)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        except (ImportError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot open storage {mask_url(self.url)}: {exc}") from exc
        self.root = root.rstrip("/")
        if protocol == "file":
            try:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the store folder {self.root}: {exc.strerror}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore:
        """The store named by ``settings.storage_url``."""
        return cls(settings.storage_url, **settings.storage_options)

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    # Addressing -----------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        """The full URI of ``key``."""
        return f"{self.url}/{_check_key(key)}"

    def key_of(self, uri: str) -> str:
        """The key of a URI inside this store."""
        prefix = self.url + "/"
        if not uri.startswith(prefix):
            raise StorageError(f"{uri} is not inside the store {self.url}")
        return _check_key(uri[len(prefix) :])

    def _path(self, key: str) -> str:
        return f"{self.root}/{_check_key(key)}"

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder on this machine (``file://``)."""
        return self.protocol == "file"

    def local_file(self, key: str) -> Path | None:
        """Where ``key`` is on this machine when the store is a local folder (a reader may memory-map it);
        None for a remote store. The file need not exist."""
        return Path(self._path(key)) if self.is_local else None

    def key_of_path(self, path: Path) -> str | None:
        """The key of local file ``path`` when it lies inside this (local) store, else None."""
        if not self.is_local or not path.is_relative_to(self.root):
            return None
        return path.relative_to(self.root).as_posix()

    def reopen(self) -> ObjectStore:
        """A new store on the same URL and options, with a client of its own (for a forked process:
        s3fs clients refuse to be used across a fork)."""
        return ObjectStore(self.url, **self._options)

    # Reading --------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        try:
            return bool(self.fs.isfile(self._path(key)))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    def is_folder(self, key: str) -> bool:
        """Whether ``key`` names a folder (a prefix with objects under it)."""
        try:
            return bool(self.fs.isdir(self._path(key)))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    def read_bytes(self, key: str) -> bytes:
        """The whole object at ``key``."""
        try:
            data: bytes = self.fs.cat_file(self._path(key))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc
        return data

    def read_text(self, key: str) -> str:
        """The object at ``key`` decoded as UTF-8."""
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        """The object at ``key`` parsed as JSON."""
        raw = self.read_bytes(key)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file object for streaming reads of ``key``."""
        try:
            handle = self.fs.open(self._path(key), "rb")
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc
        with handle:
            yield handle

    def list(self, prefix: str = "", *, suffix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive), sorted, ending in ``suffix``."""
        base = f"{self.root}/{prefix.strip('/')}" if prefix.strip("/") else self.root
        try:
            self.fs.invalidate_cache()
            if not self.fs.exists(base):
                return []
            paths = self.fs.find(base)
        except Exception as exc:
            raise _translate(exc, f"{self.url}/{prefix}") from exc
        keys = []
        for path in paths:
            rel = str(path)[len(self.root) + 1 :] if str(path).startswith(self.root) else str(path)
            name = rel.rsplit("/", 1)[-1]
            if name.startswith(_TMP_PREFIX) or not rel.endswith(suffix):
                continue
            keys.append(rel)
        return sorted(keys)

    def listing(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every object under ``prefix`` with what the backend knows of it (``size``, and ``ETag``,
        ``mtime`` or ``LastModified``), from one listing; uploads still in flight are left out."""
        base = f"{self.root}/{prefix.strip('/')}" if prefix.strip("/") else self.root
        try:
            self.fs.invalidate_cache()
            if not self.fs.exists(base):
                return {}
            found = self.fs.find(base, detail=True)
        except Exception as exc:
            raise _translate(exc, self.uri(prefix.strip("/")) if prefix.strip("/") else self.url) from exc
        listed = {}
        for path, info in found.items():
            key = str(path)[len(self.root) + 1 :]
            if not key.rsplit("/", 1)[-1].startswith(_TMP_PREFIX):
                listed[key] = dict(info)
        return listed

    def info(self, key: str) -> dict[str, Any]:
        """What the backend knows of ``key`` (``size``, and ``ETag``, ``mtime`` or ``LastModified``)."""
        try:
            return dict(self.fs.info(self._path(key)))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    def fingerprint(self, key: str) -> str | None:
        """The :func:`fingerprint` of ``key``; None when the store cannot say (or has no such object)."""
        try:
            return fingerprint(self.info(key))
        except StorageError:
            return None

    def get_file(self, key: str, local_path: str | Path) -> None:
        """Download ``key`` to ``local_path``."""
        try:
            self.fs.get_file(self._path(key), str(local_path))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """A local file with the content of ``key``: the file itself on ``file://``, else a temp copy."""
        if self.protocol == "file":
            path = Path(self._path(key))
            if not path.is_file():
                raise ObjectNotFoundError(f"{self.uri(key)}: no such object")
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="dataengine-") as tmp:
            target = Path(tmp) / key.rsplit("/", 1)[-1]
            self.get_file(key, target)
            yield target

    # Writing --------------------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Write ``data`` to ``key`` atomically.

        With ``exclusive=True`` an existing object is never replaced: writing the same bytes again is
        a no-op that returns ``False``, and different bytes raise :class:`ObjectExistsError`. The
        check and the write are one step: a hard link on local disk, a conditional PUT
        (``If-None-Match: *``) on S3, so two writers racing for a key cannot both win.
        Returns ``True`` when the object was written.
        """
        path = self._path(key)
        try:
            if self.protocol == "file":
                self._write_local(Path(path), data, exclusive=exclusive)
            elif exclusive and self.protocol in _S3_PROTOCOLS:
                self._put_if_absent(path, data)
            elif exclusive and self.exists(key):
                raise FileExistsError(path)  # A store without conditional writes: check, then put.
            else:
                self.fs.pipe_file(path, data)
        except FileExistsError as exc:
            if self.read_bytes(key) == data:
                return False
            raise ObjectExistsError(
                f"{self.uri(key)} already exists with other content; it is immutable, write a new key"
            ) from exc
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc
        return True

    def _put_if_absent(self, path: str, data: bytes) -> None:
        """One PUT with ``If-None-Match: *``; an existing object raises ``FileExistsError`` (s3fs turns
        S3's 412 into it). S3 answers 409 when another conditional write of the key is in flight: try
        again, and the loser then sees the winner's object."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                # s3fs sends objects under 100 MB (every exclusive write here) as one PUT.
                self.fs.pipe_file(path, data, IfNoneMatch="*")
                return
            except OSError as exc:
                if "ConditionalRequestConflict" not in str(exc) or attempt == _CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _write_local(self, path: Path, data: bytes, *, exclusive: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                # link() fails if the target appeared meanwhile: no other writer can be overwritten.
                os.link(tmp, path)
            else:
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def write_text(self, key: str, text: str, *, exclusive: bool = False) -> bool:
        """Write ``text`` as UTF-8 to ``key`` atomically."""
        return self.write_bytes(key, text.encode("utf-8"), exclusive=exclusive)

    def write_json(self, key: str, value: Any, *, exclusive: bool = False) -> bool:
        """Write ``value`` as indented, key-sorted JSON to ``key`` atomically."""
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return self.write_text(key, text, exclusive=exclusive)

    def put_file(self, local_path: str | Path, key: str) -> None:
        """Upload a local file to ``key`` atomically."""
        path = self._path(key)
        try:
            if self.protocol == "file":
                target = Path(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}-{target.name}"
                try:
                    shutil.copyfile(local_path, tmp)
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                self.fs.put_file(str(local_path), path)
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        try:
            if self.exists(key):
                self.fs.rm_file(self._path(key))
        except Exception as exc:
            raise _translate(exc, self.uri(key)) from exc

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix``; returns how many were removed."""
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def remove_temporaries(self, prefix: str) -> int:
        """Remove the hidden temporary files of writes that never finished (a killed process) under
        ``prefix``; returns how many. Only call it where no other writer is at work."""
        base = f"{self.root}/{_check_key(prefix)}"
        try:
            self.fs.invalidate_cache()
            if not self.fs.exists(base):
                return 0
            leftovers = [p for p in self.fs.find(base) if str(p).rsplit("/", 1)[-1].startswith(_TMP_PREFIX)]
            for path in leftovers:
                self.fs.rm_file(path)
        except FileNotFoundError:
            return 0  # Gone meanwhile: nothing left to remove.
        except Exception as exc:
            raise _translate(exc, self.uri(prefix)) from exc
        return len(leftovers)
