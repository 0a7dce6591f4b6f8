"""detect_triggers: score new clips with the data triggers and select the valuable ones under the budget."""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.assets import CLIPS, SELECTED
from dataengine.airflow.operators import AnnounceOperator, TriggersOperator


@dag(
    dag_id="detect_triggers",
    schedule=[CLIPS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["dataengine", "triggers"],
    doc_md=__doc__,
)
def detect_triggers() -> None:
    scored = TriggersOperator(task_id="score_and_select")
    AnnounceOperator(
        task_id="announce_selected", results=scored.output, count_key="selected", outlets=[SELECTED]
    )


detect_triggers()
