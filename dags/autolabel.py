"""autolabel: label the selected clips with the promoted model(s), in the gpu pool and on the gpu queue."""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.assets import AUTOLABELLED, GPU_POOL, GPU_QUEUE, SELECTED
from dataengine.airflow.operators import AnnounceOperator, AutolabelOperator, ListClipsOperator


@dag(
    dag_id="autolabel",
    schedule=[SELECTED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["dataengine", "autolabel"],
    doc_md=__doc__,
)
def autolabel() -> None:
    selected = ListClipsOperator(task_id="list_selected", stage="selected", batch_size=64)
    labelled = AutolabelOperator.partial(task_id="autolabel", pool=GPU_POOL, queue=GPU_QUEUE).expand(
        clip_ids=selected.output
    )
    AnnounceOperator(
        task_id="announce_autolabelled", results=labelled.output, count_key="clips", outlets=[AUTOLABELLED]
    )


autolabel()
