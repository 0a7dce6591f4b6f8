"""ingest_daily: find new landing videos, cut them into clips, register them in lineage.

Discovery hands out batches of videos; one mapped ingest task per batch. Transient storage errors fail
a task with a retryable error, and Airflow retries it (ingest is idempotent). The Asset event of
``dataengine://clips`` names the new clip ids in its extra, ``{"clip_ids": [...]}``.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.assets import CLIPS
from dataengine.airflow.operators import AnnounceOperator, DiscoverVideosOperator, IngestOperator


@dag(
    dag_id="ingest_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["dataengine", "ingest"],
    doc_md=__doc__,
)
def ingest_daily() -> None:
    discovered = DiscoverVideosOperator(task_id="discover")
    ingested = IngestOperator.partial(task_id="ingest").expand(inputs=discovered.output)
    AnnounceOperator(
        task_id="announce_clips",
        results=ingested.output,
        count_key="clips",
        ids_key="clip_ids",
        outlets=[CLIPS],
    )


ingest_daily()
