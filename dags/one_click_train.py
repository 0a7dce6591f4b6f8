"""one_click_train: dataset snapshot → torchrun DDP training → evaluation → promotion if better → report.

Training and evaluation run in the gpu pool, on the gpu queue. With DATAENGINE_TRAIN_NNODES=N the job
spans N machines: tasks train_node_2 … train_node_N join train's torchrun rendezvous from other workers.

Runs weekly, or now with `airflow dags trigger one_click_train` or the Trigger button in the UI. With no
new reviewed data since the last decided round it skips, saying why (param force=true trains anyway).
"""

from datetime import datetime, timedelta

from airflow.sdk import Param, dag

from dataengine.airflow.assets import GPU_POOL, GPU_QUEUE, MODELS, train_node_count
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
    model = TrainOperator(
        task_id="train", dataset=dataset.output, node_rank=0, pool=GPU_POOL, queue=GPU_QUEUE
    )
    # Multi-node training: the other nodes of the same torchrun job, one task per GPU worker (the gpu
    # pool needs a slot per node so that they run at the same time).
    others = [
        TrainOperator(
            task_id=f"train_node_{rank + 1}",
            dataset=dataset.output,
            node_rank=rank,
            pool=GPU_POOL,
            queue=GPU_QUEUE,
        )
        for rank in range(1, train_node_count())
    ]
    metrics = EvaluateOperator(task_id="evaluate", model_id=model.output, pool=GPU_POOL, queue=GPU_QUEUE)
    others >> metrics
    promote = PromoteOperator(task_id="promote", model_id=model.output, outlets=[MODELS])
    summary = SummariseOperator(task_id="summarise", dataset=dataset.output, model_id=model.output)
    metrics >> promote >> summary


one_click_train()
