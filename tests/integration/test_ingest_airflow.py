"""ingest_daily under real Airflow: mapped over batches, an Asset event naming the new clip ids, and
transient storage errors handed to Airflow as retryable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import RetryableStorageError
from dataengine.ingest import ingest
from dataengine.lineage.clips import clip_events, list_clips
from dataengine.lineage.quarantine import list_quarantine
from dataengine.storage import ObjectStore
from dataengine.synthetic import write_landing

pytest.importorskip("airflow", reason="apache-airflow is not installed")

pytestmark = pytest.mark.airflow


@pytest.mark.slow
def test_ingest_daily_maps_batches_and_names_new_clips(tmp_path: Path) -> None:
    from dataengine.demo import AirflowRunner

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'lineage.db'}", storage_url=f"file://{tmp_path / 'store'}"
    )
    ctx = Context.create(settings, run_id="test/setup")
    write_landing(ctx.store, n_videos=3, seed=41, seconds=1.0, with_events=False)
    env = {
        "DATAENGINE_DATABASE_URL": settings.database_url,
        "DATAENGINE_STORAGE_URL": settings.storage_url,
        "DATAENGINE_CLIP_SECONDS": "1.0",
        "DATAENGINE_INGEST_BATCH_SIZE": "2",
    }
    runner = AirflowRunner(tmp_path, env, echo=lambda _: None)
    runner.setup()
    runner.run("ingest_daily", "first")

    with ctx.db.session() as session:
        clips = [clip.id for clip in list_clips(session)]
        runs = {str(e.run_id) for clip in clips for e in clip_events(session, clip)}
    assert len(clips) == 3
    # Two mapped task instances: batches of 2 and 1 videos.
    assert {run.rsplit("[", 1)[-1] for run in runs} == {"0]", "1]"}
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        events = [json.loads(extra) for (extra,) in db.execute("SELECT extra FROM asset_event")]
    assert [sorted(event["clip_ids"]) for event in events] == [sorted(clips)]
    ctx.close()


def test_transient_storage_error_is_raised_for_a_retry_and_the_retry_completes(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from dataengine.airflow.operators import IngestOperator

    [key] = write_landing(ctx.store, n_videos=1, seed=42, seconds=2.0, with_events=False)
    real_put = ObjectStore.put_file
    calls: list[str] = []

    def flaky_put(self: ObjectStore, local: Any, target: str) -> None:
        calls.append(target)
        if len(calls) == 2:
            raise RetryableStorageError(f"{self.uri(target)}: connection reset")
        real_put(self, local, target)

    monkeypatch.setattr(ObjectStore, "put_file", flaky_put)
    monkeypatch.setenv("DATAENGINE_DATABASE_URL", ctx.settings.database_url)
    monkeypatch.setenv("DATAENGINE_STORAGE_URL", ctx.settings.storage_url)
    monkeypatch.setenv("DATAENGINE_CLIP_SECONDS", "1.0")
    operator = IngestOperator(task_id="ingest", inputs=[key])
    # The task instance fields StageOperator reads; nothing else of the Airflow context is used.
    context: Any = {
        "ti": SimpleNamespace(dag_id="ingest_daily", run_id="manual", task_id="ingest", map_index=0)
    }
    with pytest.raises(AirflowException) as raised:
        operator.execute(context)
    assert not isinstance(raised.value, AirflowFailException)  # Airflow retries it
    with ctx.db.session() as session:
        assert list_quarantine(session) == []  # a storage hiccup is not a bad input
    result = operator.execute(context)
    assert result["videos"] == 1
    assert len(result["clip_ids"]) == 2  # with the clip the failed try registered
    assert ingest(ctx, [key]).skipped_videos != []
    with ctx.db.session() as session:
        assert len(list_clips(session)) == 2
