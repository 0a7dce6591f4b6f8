"""The Assets that chain the DAGs: each DAG announces what it produced, the next one is scheduled on it."""

from __future__ import annotations

import os

from airflow.sdk import Asset

CLIPS = Asset("dataengine://clips")
SELECTED = Asset("dataengine://selected")
AUTOLABELLED = Asset("dataengine://autolabelled")
IN_REVIEW = Asset("dataengine://in_review")
REVIEWED = Asset("dataengine://reviewed")
MODELS = Asset("dataengine://models")

#: The pool that GPU work (autolabel, training, evaluation) runs in; the set-up creates it with one slot.
GPU_POOL = "gpu"
#: The Celery queue of that GPU work: only workers started with ``--queues gpu`` take it. Everything
#: else goes to Airflow's ``[operators] default_queue`` (``default``). LocalExecutor ignores queues.
GPU_QUEUE = "gpu"


def train_node_count() -> int:
    """Machines one training job spans: the largest of ``DATAENGINE_TRAIN_NNODES`` ("2" or "2:4").

    Read when the DAG file is parsed, so the dag-processor needs the same value as the workers: each
    node past the first is a ``train_node_N`` task beside ``train``, on the gpu queue.
    """
    value = os.environ.get("DATAENGINE_TRAIN_NNODES", "1").strip() or "1"
    try:
        return max(1, int(value.rpartition(":")[2]))
    except ValueError:
        return 1  # the train task itself reports the invalid setting, with the fix
