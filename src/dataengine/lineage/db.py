"""Connecting to the lineage database and migrating it with Alembic."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from dataengine.errors import ConfigError, LineageError, RetryableLineageError
from dataengine.redaction import mask_url

HEAD_REVISION = "0006"
_MIGRATE_WAIT_SECONDS = 120.0
#: A pooled server connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers (the CLI, the Airflow UI plugin) run while a task writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the folder of a SQLite file.

    A URL that is not one (or names no installed driver) is a :class:`ConfigError`; a SQLite folder
    that cannot be created is a :class:`LineageError`.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"DATAENGINE_DATABASE_URL {mask_url(url)!r} is not a database URL: {exc}") from exc
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        _create_sqlite_folder(parsed.database)
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use database URL {parsed.render_as_string()}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection before use when it sat idle for more than :data:`IDLE_PING_SECONDS`;
    a dead one is replaced by a new connection, as SQLAlchemy's ``pool_pre_ping`` does.

    ``pool_pre_ping`` pings at every checkout: one round trip more per transaction, a seventh of
    ``clip show`` (issue 17). A connection that worked less than a second ago is taken as alive: if
    the server went away in that second, the transaction fails with a retryable error, as it does when
    the server goes away during a transaction.
    """

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since <= IDLE_PING_SECONDS:
            return  # a new connection, or one in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"the pooled connection is gone: {exc}") from exc
        if not alive:
            raise DisconnectionError("the pooled connection is gone")

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _create_sqlite_folder(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    if path.is_dir():
        raise LineageError(f"the SQLite lineage database {path} is a directory; name a file")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LineageError(
            f"cannot create the folder {folder} of the SQLite lineage database: {exc.strerror}"
        ) from exc


_TRANSIENT_MARKERS = ("database is locked", "could not connect", "connection refused", "server closed")


def _operational_error(database: Database, exc: OperationalError) -> LineageError:
    message = str(exc.orig)
    if exc.connection_invalidated or any(marker in message.lower() for marker in _TRANSIENT_MARKERS):
        return RetryableLineageError(f"lineage database {database.display_url} is unavailable: {message}")
    return LineageError(
        f"lineage database {database.display_url} refused the operation: {message}; "
        "if a table is missing, run `dataengine init` to migrate it"
    )


class Database:
    """The lineage database: an engine, a session factory and the migrations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        from dataengine.lineage.clips import count_flushed_events

        # Every clip event inserted through these sessions is counted per day in the same transaction.
        event.listen(self._sessions, "after_flush", count_flushed_events)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The URL with its password masked, for messages."""
        return make_url(self.url).render_as_string()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise _operational_error(self, exc) from exc
        except IntegrityError as exc:
            session.rollback()
            raise RetryableLineageError(
                f"lineage database {self.display_url}: another run wrote the same rows meanwhile "
                f"({exc.orig}); run it again, it picks up what the other run wrote"
            ) from exc
        except DatabaseError as exc:
            session.rollback()
            raise _database_error(self, exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def lock(self, name: str, *, wait_seconds: float = 0.0) -> Iterator[bool]:
        """Hold the lock ``name`` between every process on this database (see :mod:`.locks`); yields
        False, holding nothing, when another run held it for all of ``wait_seconds``."""
        from dataengine.lineage.locks import named_lock

        with named_lock(self.engine, name, wait_seconds=wait_seconds) as held:
            yield held

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already.

        Two processes that start on a new database at once migrate one after the other. A database at
        the newest revision is recognised by one query, without loading Alembic (its imports are most of
        a short command's start-up).
        """
        if self.current_revision() == HEAD_REVISION:
            return
        from alembic import command

        with self.lock("migrate", wait_seconds=_MIGRATE_WAIT_SECONDS) as held:
            if not held:
                raise RetryableLineageError(
                    f"{self.display_url} is being migrated by another process; try again"
                )
            with self.engine.begin() as connection:
                config = alembic_config(self.url)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` when it was never migrated."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            # The table Alembic keeps: one row on a linear history like ours, none before the first.
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def table_names(self) -> list[str]:
        """The tables that exist in the database."""
        return sorted(inspect(self.engine).get_table_names())

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` pointing at our migrations and ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("dataengine.lineage") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect to ``url`` and, by default, migrate it to the newest schema."""
    database = Database(url)
    if migrate:
        try:
            database.migrate()
        except OperationalError as exc:
            hint = " (is its folder writable?)" if database.engine.dialect.name == "sqlite" else ""
            raise LineageError(
                f"cannot reach the lineage database {database.display_url}: {exc.orig}{hint}"
            ) from exc
        except DatabaseError as exc:
            raise _database_error(database, exc) from exc
    return database


def _database_error(database: Database, exc: DatabaseError) -> LineageError:
    """A database error that is not a lost connection: for SQLite, most likely a damaged file."""
    if database.engine.dialect.name == "sqlite":
        return LineageError(
            f"{database.display_url} is not a usable SQLite database ({exc.orig}): restore the file "
            "from a backup, or point DATAENGINE_DATABASE_URL at another file"
        )
    return LineageError(f"lineage database {database.display_url} failed: {exc.orig}")
