"""one_click_train: dataset snapshot → torchrun DDP training → evaluation → promotion if better → report.

Runs weekly, or now with `airflow dags trigger one_click_train` or the Trigger button in the UI. With no
new reviewed data since the last decided round it skips, saying why (param force=true trains anyway).
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag

from dataengine.airflow.assets import GPU_POOL, MODELS
from dataengine.airflow.operators import (
    BuildDatasetOperator,
    EvaluateOperator,
    PromoteOperator,
    SummariseOperator,
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
        "force": Param(False, type="boolean", description="train even when no new data was reviewed"),
        "rebuild_heldout": Param(
            False, type="boolean", description="freeze a new held-out set from today's val split"
        ),
    },
    tags=["dataengine", "training"],
    doc_md=__doc__,
)
def one_click_train() -> None:
    dataset = BuildDatasetOperator(task_id="build_dataset")
    model = TrainOperator(task_id="train", dataset=dataset.output, pool=GPU_POOL)
    metrics = EvaluateOperator(task_id="evaluate", model_id=model.output)
    promote = PromoteOperator(task_id="promote", model_id=model.output, outlets=[MODELS])
    summary = SummariseOperator(task_id="summarise", dataset=dataset.output, model_id=model.output)
    metrics >> promote >> summary


one_click_train()
