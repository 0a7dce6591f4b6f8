"""Named locks between processes that share one lineage database, so two runs never work on one thing.

On PostgreSQL a lock is a session advisory lock, held by a connection of its own: the server drops it
when that connection ends, also when the process is killed. On SQLite (one machine) it is a POSIX
record lock on one byte of a lock file beside the database, which the kernel drops when the process
dies; locks inside one process are also kept apart, so threads exclude each other too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from dataengine.errors import LineageError, RetryableLineageError

_POLL_SECONDS = 0.2
# Byte offsets of SQLite lock names in the lock file: 2**40 places make a clash of two names unlikely.
_SQLITE_SPAN = 1 << 40
_held_here: set[tuple[str, int]] = set()
_handles: dict[Path, int] = {}
_guard = threading.Lock()


def lock_key(name: str) -> int:
    """A stable signed 64-bit number for ``name`` (PostgreSQL advisory lock keys are bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def named_lock(engine: Engine, name: str, *, wait_seconds: float = 0.0) -> Iterator[bool]:
    """Hold the lock ``name`` for the block; yields False (holding nothing) when another process or
    thread held it for all of ``wait_seconds``."""
    if engine.dialect.name == "postgresql":
        with _postgres_lock(engine, name, wait_seconds) as held:
            yield held
    else:
        with _file_lock(_lock_file(engine), name, wait_seconds) as held:
            yield held


def _lock_file(engine: Engine) -> Path | None:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # An in-memory database lives in this process: a lock here is enough.
    return Path(database).expanduser().resolve().with_name(Path(database).name + ".locks")


def _retry_until(deadline: float, attempt: Callable[[], bool]) -> bool:
    """Call ``attempt()`` until it returns True or ``deadline`` (monotonic) passes."""
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _postgres_lock(engine: Engine, name: str, wait_seconds: float) -> Iterator[bool]:
    key = lock_key(name)

    def attempt() -> bool:
        held = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        connection.commit()  # The lock belongs to the session, not to this transaction.
        return bool(held)

    try:
        connection = engine.connect()
        held = _retry_until(time.monotonic() + wait_seconds, attempt)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        where = engine.url.render_as_string()
        raise RetryableLineageError(f"cannot reach the lineage database {where}: {cause}") from exc
    try:
        yield held
    finally:
        _postgres_release(connection, key, held)


def _postgres_release(connection: Connection, key: int, held: bool) -> None:
    """Unlock and hand the connection back; a connection that cannot unlock is thrown away, which
    ends its session and so its lock (a pooled connection would otherwise keep holding it)."""
    try:
        if held:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()
    except SQLAlchemyError:
        with contextlib.suppress(SQLAlchemyError):
            connection.invalidate()
    with contextlib.suppress(SQLAlchemyError):
        connection.close()


def _lock_handle(path: Path) -> int:
    """The process's one descriptor of a lock file. It stays open: closing any descriptor of a file
    drops every record lock the process holds on it."""
    handle = _handles.get(path)
    if handle is None:
        try:
            handle = _handles[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LineageError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    return handle


@contextlib.contextmanager
def _file_lock(path: Path | None, name: str, wait_seconds: float) -> Iterator[bool]:
    offset = lock_key(name) % _SQLITE_SPAN
    token = (str(path), offset)

    def attempt() -> bool:
        with _guard:
            if token in _held_here:
                return False
            if path is not None:
                try:
                    fcntl.lockf(_lock_handle(path), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except OSError as exc:
                    if exc.errno in (errno.EACCES, errno.EAGAIN):
                        return False  # Held by another process.
                    raise LineageError(f"cannot lock {name!r} in {path}: {exc.strerror}") from exc
            _held_here.add(token)
            return True

    held = _retry_until(time.monotonic() + wait_seconds, attempt)
    try:
        yield held
    finally:
        if held:
            with _guard:
                if path is not None:
                    fcntl.lockf(_lock_handle(path), fcntl.LOCK_UN, 1, offset)
                _held_here.discard(token)
