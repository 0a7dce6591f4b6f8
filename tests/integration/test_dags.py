"""The six DAGs parse in a real Airflow DagBag, with the structure, schedules, pools and Assets of §6."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow", reason="apache-airflow is not installed")

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
EXPECTED = {
    "ingest_daily": ("0 0 * * *", ["discover", "ingest", "announce_clips"]),
    "detect_triggers": ("asset", ["score_and_select", "announce_selected"]),
    "autolabel": ("asset", ["list_selected", "autolabel", "announce_autolabelled"]),
    "review_export": ("asset", ["export", "announce_in_review"]),
    "review_import": ("0 * * * *", ["import_reviews"]),
    "one_click_train": ("0 0 * * 0", ["build_dataset", "train", "evaluate", "promote", "summarise"]),
    "retrain_anomaly": ("0 0 * * *", ["train_anomaly"]),
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_imports_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == sorted(EXPECTED)


def test_dag_file_stem_is_the_dag_id() -> None:
    assert sorted(p.stem for p in DAGS.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_tasks_and_schedule(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    schedule, tasks = EXPECTED[dag_id]
    assert [t.task_id for t in dag.topological_sort()] == tasks
    timetable = type(dag.timetable).__name__
    if schedule == "asset":
        assert timetable == "AssetTriggeredTimetable"
    else:
        assert timetable == "CronTriggerTimetable"
        assert f"expression='{schedule}'" in repr(dag.timetable)
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def _outlets(dag: Any) -> dict[str, list[str]]:
    return {t.task_id: [a.name for a in t.outlets] for t in dag.tasks if t.outlets}


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_each_dag_runs_the_tasks_of_the_workflow_table(dagbag: Any, dag_id: str) -> None:
    """`demo --through python` runs dataengine.workflow.DAGS: the same tasks, calls and mapping."""
    from dataengine.workflow import DAGS as TABLE

    dag = dagbag.dags[dag_id]
    table = {task.task_id: task for task in TABLE[dag_id]}
    assert [t.task_id for t in dag.topological_sort()] == list(table)
    for operator in dag.topological_sort():
        task = table[operator.task_id]
        mapped = type(operator).__name__ == "MappedOperator"
        operator_class = operator.operator_class if mapped else type(operator)
        assert operator_class.task_call is task.call, operator.task_id
        assert mapped == (task.mapped_over is not None), operator.task_id
        assert set(task.inputs.values()) <= set(operator.upstream_task_ids), operator.task_id


def test_assets_chain_the_dags(dagbag: Any) -> None:
    assert _outlets(dagbag.dags["ingest_daily"]) == {"announce_clips": ["dataengine://clips"]}
    assert _outlets(dagbag.dags["detect_triggers"]) == {"announce_selected": ["dataengine://selected"]}
    assert _outlets(dagbag.dags["autolabel"]) == {"announce_autolabelled": ["dataengine://autolabelled"]}
    assert _outlets(dagbag.dags["review_import"]) == {"import_reviews": ["dataengine://reviewed"]}
    assert _outlets(dagbag.dags["one_click_train"]) == {"promote": ["dataengine://models"]}
    scheduled_on = {
        dag_id: [a.name for a in dagbag.dags[dag_id].timetable.asset_condition.objects]
        for dag_id in ("detect_triggers", "autolabel", "review_export")
    }
    assert scheduled_on == {
        "detect_triggers": ["dataengine://clips"],
        "autolabel": ["dataengine://selected"],
        "review_export": ["dataengine://autolabelled"],
    }


def test_gpu_work_runs_in_the_gpu_pool(dagbag: Any) -> None:
    pools = {(dag_id, t.task_id): t.pool for dag_id, dag in dagbag.dags.items() for t in dag.tasks}
    assert pools[("autolabel", "autolabel")] == "gpu"
    assert pools[("one_click_train", "train")] == "gpu"
    assert pools[("ingest_daily", "ingest")] == "default_pool"


def test_gpu_work_goes_to_the_gpu_queue_and_the_rest_to_the_default_queue(dagbag: Any) -> None:
    queues = {(dag_id, t.task_id): t.queue for dag_id, dag in dagbag.dags.items() for t in dag.tasks}
    on_gpu = {k for k, queue in queues.items() if queue == "gpu"}
    assert on_gpu == {
        ("autolabel", "autolabel"),
        ("one_click_train", "train"),
        ("one_click_train", "evaluate"),
    }
    assert {queue for k, queue in queues.items() if k not in on_gpu} == {"default"}


def test_multi_node_training_adds_a_train_task_per_node(tmp_path: Path) -> None:
    """With DATAENGINE_TRAIN_NNODES=3 the DAG holds train_node_2 and train_node_3 beside train."""
    code = (
        "import json, runpy\n"
        f"dag = runpy.run_path({str(DAGS / 'one_click_train.py')!r})['one_click_train']()\n"
        "print(json.dumps({t.task_id: [t.queue, t.pool, t.node_rank, sorted(t.downstream_task_ids)]"
        " for t in dag.tasks if t.task_id.startswith('train')}))\n"
    )
    env = {**os.environ, "DATAENGINE_TRAIN_NNODES": "2:3", "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    tasks = json.loads(result.stdout.strip().splitlines()[-1])
    assert tasks == {
        "train": ["gpu", "gpu", 0, ["evaluate", "promote", "summarise"]],
        "train_node_2": ["gpu", "gpu", 1, ["evaluate"]],
        "train_node_3": ["gpu", "gpu", 2, ["evaluate"]],
    }


def test_mapped_tasks_fan_out_over_batches(dagbag: Any) -> None:
    ingest = dagbag.dags["ingest_daily"].get_task("ingest")
    autolabel = dagbag.dags["autolabel"].get_task("autolabel")
    assert type(ingest).__name__ == "MappedOperator"
    assert type(autolabel).__name__ == "MappedOperator"


def test_dag_files_import_no_heavy_modules() -> None:
    """Parsing the DAG folder must not import torch, av or the stage packages (Airflow parses constantly)."""
    code = (
        "import json, runpy, sys, pathlib\n"
        f"for p in sorted(pathlib.Path({str(DAGS)!r}).glob('*.py')):\n"
        "    runpy.run_path(str(p))\n"
        "heavy = ['torch', 'torchvision', 'av', 'cv2', 'dataengine.ingest', 'dataengine.training',"
        " 'dataengine.autolabel', 'dataengine.triggers', 'dataengine.review']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_core_never_imports_airflow() -> None:
    src = REPO / "src" / "dataengine"
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if "airflow" not in path.relative_to(src).parts[:1]
        and any(
            line.lstrip().startswith(("import airflow", "from airflow"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
