"""The Assets that chain the DAGs: each DAG announces what it produced, the next one is scheduled on it."""

from __future__ import annotations

from airflow.sdk import Asset

CLIPS = Asset("dataengine://clips")
SELECTED = Asset("dataengine://selected")
AUTOLABELLED = Asset("dataengine://autolabelled")
IN_REVIEW = Asset("dataengine://in_review")
REVIEWED = Asset("dataengine://reviewed")
MODELS = Asset("dataengine://models")

#: The pool that GPU work (autolabel, training) runs in; the set-up creates it with one slot.
GPU_POOL = "gpu"
