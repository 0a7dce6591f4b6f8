"""one_click_train: dataset snapshot → torchrun DDP training → evaluation → promotion if better.

Runs weekly, or now with `airflow dags trigger one_click_train` or the Trigger button in the UI.
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag

from dataengine.airflow.assets import GPU_POOL, MODELS
from dataengine.airflow.operators import (
    BuildDatasetOperator,
    EvaluateOperator,
    PromoteOperator,
    TrainOperator,
)


@dag(
    dag_id="one_click_train",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "dataset_name": Param("default", type="string", description="dataset to snapshot and train on"),
        "nproc": Param(None, type=["null", "integer"], description="DDP processes (default: settings)"),
    },
    tags=["dataengine", "training"],
    doc_md=__doc__,
)
def one_click_train() -> None:
    dataset = BuildDatasetOperator(task_id="build_dataset")
    model = TrainOperator(task_id="train", dataset=dataset.output, pool=GPU_POOL)
    metrics = EvaluateOperator(task_id="evaluate", model_id=model.output, dataset=dataset.output)
    promote = PromoteOperator(task_id="promote", model_id=model.output, outlets=[MODELS])
    metrics >> promote


one_click_train()
