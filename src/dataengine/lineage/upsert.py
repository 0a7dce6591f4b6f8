"""``INSERT ... ON CONFLICT DO NOTHING``: registration under the database's own unique keys.

Check-then-insert lets two runs both see "absent" and both insert; the loser then fails on the unique
key. An insert that does nothing on conflict cannot lose: on PostgreSQL a concurrent insert of the same
key waits for the first transaction and then does nothing, and SQLite runs one writer at a time.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dataengine.errors import LineageError
from dataengine.lineage.models import Base


def insert_if_absent(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """Insert one row of ``model`` unless a row with any of its unique keys exists; True when this
    call inserted it. Column defaults apply as in an ORM insert."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(model).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(model).values(**values).on_conflict_do_nothing()
    else:
        raise LineageError(f"the lineage database runs on PostgreSQL or SQLite, not {dialect}")
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount == 1
