"""retrain_anomaly: retrain the anomaly trigger's autoencoder on the most recently ingested clips."""

from datetime import datetime, timedelta

from airflow.sdk import dag

from dataengine.airflow.operators import RetrainAnomalyOperator


@dag(
    dag_id="retrain_anomaly",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["dataengine", "triggers"],
    doc_md=__doc__,
)
def retrain_anomaly() -> None:
    RetrainAnomalyOperator(task_id="train_anomaly")


retrain_anomaly()
