"""What every stage call needs: settings, the object store, the lineage database and who is running it."""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from dataengine.config import Settings, load_settings
from dataengine.lineage.db import Database, open_database
from dataengine.storage import ObjectStore


def new_run_id(prefix: str = "cli") -> str:
    """A run id for work started outside Airflow, e.g. ``cli/1f3a9c2e``."""
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "dataengine"


@dataclass
class Context:
    """Settings, store and database of one entry point, plus the run that is acting.

    ``run_id`` is ``dag_id/run_id/task_id`` under Airflow and ``cli/<hex>`` from the CLI; it is written
    into every lineage event, so a clip's history says which run moved it.
    """

    settings: Settings
    store: ObjectStore
    db: Database
    run_id: str = field(default_factory=new_run_id)
    actor: str = field(default_factory=_default_actor)

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        run_id: str | None = None,
        actor: str | None = None,
        migrate: bool = True,
        **overrides: Any,
    ) -> Context:
        """Open the store and the database named by ``settings`` (loaded from the environment if None)."""
        settings = settings or load_settings(**overrides)
        return cls(
            settings=settings,
            store=ObjectStore.from_settings(settings),
            db=open_database(settings.database_url, migrate=migrate),
            run_id=run_id or new_run_id(),
            actor=actor or _default_actor(),
        )

    def with_run(self, run_id: str, actor: str | None = None) -> Context:
        """The same context acting as another run."""
        return replace(self, run_id=run_id, actor=actor or self.actor)

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()
