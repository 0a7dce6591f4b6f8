"""dataengine.workflow.run_dag: inputs from upstream results, mapping, params, and a skip ending the run."""

from __future__ import annotations

from typing import Any

import pytest

from dataengine.config import Settings
from dataengine.context import Context
from dataengine.errors import NothingToDoError
from dataengine.workflow import DAGS, Task, announce, batches, run_dag


@pytest.fixture
def ctx(tmp_path: Any) -> Context:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}", storage_url=f"file://{tmp_path}/s")
    return Context.create(settings, run_id="test/workflow")


def _listing(ctx: Context, *, size: int) -> list[list[str]]:
    return batches(["a", "b", "c"], size)


def _work(ctx: Context, *, items: list[str], suffix: str) -> dict[str, Any]:
    return {"done": len(items), "ids": [f"{i}{suffix}" for i in items], "run": ctx.run_id}


def _nothing(ctx: Context) -> None:
    raise NothingToDoError("nothing new")


def _never(ctx: Context) -> None:
    pytest.fail("a task after a skipped one ran")


TABLE = {
    "fan_out": (
        Task("list", _listing, options={"size": 2}),
        Task("work", _work, inputs={"items": "list"}, params={"suffix": "suffix"}, mapped_over="items"),
        Task(
            "announce",
            announce,
            inputs={"results": "work"},
            options={"count_key": "done", "ids_key": "ids"},
            needs_context=False,
        ),
    ),
    "skips": (Task("first", _nothing), Task("second", _never)),
}


def test_mapped_tasks_take_each_batch_and_params(ctx: Context) -> None:
    results = run_dag(ctx, "fan_out", {"suffix": "!"}, table=TABLE)
    assert results["list"] == [["a", "b"], ["c"]]
    assert results["work"] == [
        {"done": 2, "ids": ["a!", "b!"], "run": "test/workflow/work"},
        {"done": 1, "ids": ["c!"], "run": "test/workflow/work"},
    ]
    assert results["announce"] == (3, ["a!", "b!", "c!"])


def test_a_task_with_nothing_to_do_ends_the_run(ctx: Context) -> None:
    assert run_dag(ctx, "skips", table=TABLE) == {}


def test_unknown_dag_names_the_known_ones(ctx: Context) -> None:
    with pytest.raises(KeyError, match="fan_out, skips"):
        run_dag(ctx, "nope", table=TABLE)


def test_announce_skips_on_zero() -> None:
    with pytest.raises(NothingToDoError, match="no new clips"):
        announce([{"clips": 0}, {"clips": 0}], count_key="clips")
    assert announce({"selected": 2}, count_key="selected") == (2, [])


def test_the_table_names_every_dag_of_the_loop() -> None:
    assert sorted(DAGS) == [
        "autolabel",
        "detect_triggers",
        "ingest_daily",
        "one_click_train",
        "retrain_anomaly",
        "review_export",
        "review_import",
    ]
    train = [task.task_id for task in DAGS["one_click_train"]]
    assert train == ["build_dataset", "train", "evaluate", "promote", "summarise"]
