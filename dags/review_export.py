"""review_export: push autolabelled clips and their pre-labels to the review platform.

The platform is `DATAENGINE_REVIEW_PLATFORM` (local, encord or labelstudio). Encord's SSH key comes from
the Airflow Connection `encord_default` (password), Label Studio's URL and token from
`labelstudio_default`; rate limits and outages are retried. See docs/review.md.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.assets import AUTOLABELLED, IN_REVIEW
from dataengine.airflow.operators import AnnounceOperator, ReviewExportOperator


@dag(
    dag_id="review_export",
    schedule=[AUTOLABELLED],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    tags=["dataengine", "review"],
    doc_md=__doc__,
)
def review_export() -> None:
    exported = ReviewExportOperator(task_id="export")
    AnnounceOperator(
        task_id="announce_in_review", results=exported.output, count_key="exported", outlets=[IN_REVIEW]
    )


review_export()
