"""review_import: pull completed reviews and write them as new annotation versions (hourly).

Idempotent: a review imported once is never imported again. Credentials as in review_export.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.assets import REVIEWED
from dataengine.airflow.operators import ReviewImportOperator


@dag(
    dag_id="review_import",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    tags=["dataengine", "review"],
    doc_md=__doc__,
)
def review_import() -> None:
    ReviewImportOperator(task_id="import_reviews", outlets=[REVIEWED])


review_import()
