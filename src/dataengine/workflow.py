"""Every DAG's tasks as plain stage calls: one table of DAG id -> tasks, used by Airflow and by the demo.

Each Airflow operator in :mod:`dataengine.airflow.operators` runs one function of this table (its
``task_call``) and adds only what is Airflow's: XCom, Asset events, mapping, pools and queues.
``dataengine demo --through python`` runs the same table in-process with :func:`run_dag`, so the two
paths cannot drift. A task with no new input raises :class:`~dataengine.errors.NothingToDoError`: Airflow
marks it skipped, and :func:`run_dag` stops the DAG there. Stage imports happen inside the functions,
because Airflow imports the operators whenever it parses a DAG file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dataengine.errors import NothingToDoError

if TYPE_CHECKING:
    from dataengine.context import Context

log = logging.getLogger(__name__)


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    """``items`` in consecutive batches of at most ``size``: the unit of dynamic task mapping."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# Ingest -------------------------------------------------------------------------------------------


def discover(ctx: Context, *, batch_size: int | None = None) -> list[list[str]]:
    """New landing videos, in batches for the mapped ingest tasks."""
    from dataengine.ingest import discover as discover_videos

    keys = discover_videos(ctx)
    log.info("%d new video(s) in %s", len(keys), ctx.store.uri(ctx.settings.landing_prefix))
    if not keys:
        raise NothingToDoError("no new videos in landing/")
    return batches(keys, batch_size or ctx.settings.ingest_batch_size)


def ingest(ctx: Context, *, inputs: list[str] | None = None) -> dict[str, Any]:
    """Ingest a batch of videos (store keys); the report's counts and the clips it completed."""
    from dataengine.ingest import ingest as ingest_videos

    report = ingest_videos(ctx, inputs)
    log.info("%s", report.summary())
    # Clips of the videos this task completed, with those an earlier, failed try registered:
    # no Asset event has named them yet.
    clip_ids = [*report.existing_clips, *report.clips]
    return {
        "videos": len(report.videos),
        "clips": len(clip_ids),
        "quarantined": len(report.quarantined),
        "clip_ids": sorted(clip_ids),
    }


def announce(results: Any, *, count_key: str, ids_key: str | None = None) -> tuple[int, list[str]]:
    """The sum of ``count_key`` over upstream results and the ``ids_key`` ids they name.

    Raises :class:`NothingToDoError` when the sum is zero, so nothing downstream is told of new data.
    """
    rows = [results] if isinstance(results, dict) else list(results or [])
    rows = [row for row in rows if isinstance(row, dict)]
    total = sum(int(row.get(count_key, 0)) for row in rows)
    log.info("%s: %d", count_key, total)
    if total == 0:
        raise NothingToDoError(f"no new {count_key}: nothing to announce downstream")
    ids = sorted({i for row in rows for i in row.get(ids_key, [])}) if ids_key else []
    return total, ids


# Triggers and autolabel ---------------------------------------------------------------------------


def score_and_select(
    ctx: Context, *, budget_fraction: float | None = None, budget_count: int | None = None
) -> dict[str, Any]:
    """Score new clips with the data triggers and select under the budget."""
    from dataengine.triggers import run_triggers

    report = run_triggers(ctx, budget_fraction=budget_fraction, budget_count=budget_count)
    log.info("%s", report.summary())
    if not report.scored and not report.selected and not report.rejected and not report.quarantined:
        raise NothingToDoError("no new clips to score")
    return {
        "scored": len(report.scored),
        "selected": len(report.selected),
        "rejected": len(report.rejected),
        "skipped_triggers": report.skipped_triggers,
    }


def train_anomaly(ctx: Context) -> dict[str, Any]:
    """Retrain the anomaly trigger's autoencoder on recent clips."""
    from dataengine.triggers.anomaly_task import train_anomaly as retrain

    report = retrain(ctx)
    log.info("%s", report.summary())
    if report.n_clips == 0:
        raise NothingToDoError(report.reason)
    return {"model_id": report.model_id, "trained": report.trained, "clips": report.n_clips}


def list_clips(ctx: Context, *, stage: str, batch_size: int = 64) -> list[list[str]]:
    """The clips in ``stage``, in batches for mapped tasks."""
    from dataengine.lineage.clips import list_clips as clips_in

    with ctx.db.session() as session:
        clip_ids = [clip.id for clip in clips_in(session, stage=stage)]
    log.info("%d clip(s) in stage %s", len(clip_ids), stage)
    if not clip_ids:
        raise NothingToDoError(f"no clips in stage {stage}")
    return batches(clip_ids, batch_size)


def autolabel(ctx: Context, *, clip_ids: list[str] | None = None) -> dict[str, Any]:
    """Autolabel a batch of selected clips with the promoted model.

    With no model yet (day one, labelling from scratch), the clips are passed on unlabelled: review
    export sends them with empty pre-labels.
    """
    from dataengine.autolabel import autolabel as label
    from dataengine.review.exporting import model_available

    if not model_available(ctx):
        log.info(
            "no model to autolabel with: %d clip(s) go to review without pre-labels", len(clip_ids or [])
        )
        return {"clips": len(clip_ids or []), "boxes": 0, "model_id": None, "without_prelabels": True}
    report = label(ctx, clip_ids=clip_ids)
    log.info("%s", report.summary())
    return {"clips": len(report.clips), "boxes": report.n_boxes, "model_id": report.model_id}


# Review -------------------------------------------------------------------------------------------


def export_for_review(ctx: Context, *, platform: str | None = None) -> dict[str, Any]:
    """Push autolabelled clips and their pre-labels to the review platform."""
    from dataengine.review import export_for_review as export

    report = export(ctx, platform=platform)
    log.info("%s", report.summary())
    return {
        "exported": len(report.exported),
        "platform": report.platform,
        "without_prelabels": len(report.empty),
    }


def import_reviews(ctx: Context, *, platform: str | None = None) -> dict[str, Any]:
    """Pull completed reviews and write them as new annotation versions."""
    from dataengine.review import import_reviews as pull

    report = pull(ctx, platform=platform)
    log.info("%s", report.summary())
    if not report.imported and not report.failed:
        raise NothingToDoError("no completed reviews to import")
    return {
        "imported": len(report.imported),
        "boxes_changed": report.boxes_changed,
        "failed": len(report.failed),
        "simulated": report.simulated,
    }


# Training -----------------------------------------------------------------------------------------


def build_dataset(
    ctx: Context, *, dataset_name: str = "default", rebuild_heldout: bool = False, force: bool = False
) -> str:
    """Snapshot the reviewed clips for a training round; the dataset id (see ``dataset_for_round``)."""
    from dataengine.errors import NothingReviewedError
    from dataengine.training.rounds import dataset_for_round

    try:
        ref = dataset_for_round(ctx, name=dataset_name, rebuild_heldout=rebuild_heldout, force=force)
    except NothingReviewedError as exc:
        raise NothingToDoError(str(exc)) from exc  # day one: a skip, not a failed weekly run
    return ref.dataset_id


def train(
    ctx: Context, *, dataset: str | None = None, nproc: int | None = None, node_rank: int | None = None
) -> str:
    """Train a detector with torchrun DDP on a dataset version; the model id."""
    from dataengine.training import train as train_model

    result = train_model(ctx, dataset=dataset, nproc=nproc, node_rank=node_rank)
    log.info(
        "model %s on %s (%s)", result.model_id, result.dataset_id, "trained" if result.created else "exists"
    )
    return result.model_id


def evaluate(ctx: Context, *, model_id: str, dataset: str | None = None) -> dict[str, Any]:
    """The candidate's and the promoted model's mAP on both held-out sets."""
    from dataengine.training.rounds import evaluate_round

    return evaluate_round(ctx, model_id=model_id, dataset=dataset)


def promote(ctx: Context, *, model_id: str) -> dict[str, Any]:
    """Promote the model when it passes the promotion gate against the promoted one."""
    from dataengine.training import promote_if_better

    decision = promote_if_better(ctx, model_id=model_id)
    log.info("%s", decision.summary())
    return decision.to_dict()


def summarise(ctx: Context, *, dataset: str, model_id: str) -> str:
    """The round's report: dataset diff, metrics before and after, the decision."""
    from dataengine.training.summary import summarise_round

    report = summarise_round(ctx, dataset_id=dataset, model_id=model_id)
    for line in report.splitlines():
        log.info("%s", line)
    return report


# The table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One task of a DAG: its id, the function it runs, and where its inputs come from."""

    task_id: str
    call: Callable[..., Any]
    #: keyword argument -> the upstream task whose result it takes.
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: Fixed keyword arguments (what the DAG file passes the operator).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: keyword argument -> the DAG param it takes, when the run sets it.
    params: Mapping[str, str] = field(default_factory=dict)
    #: Run once per item of this input (Airflow's dynamic task mapping).
    mapped_over: str | None = None
    #: Takes the context (``announce`` only sums its inputs).
    needs_context: bool = True


_TRAIN_PARAMS = {"dataset_name": "dataset_name", "rebuild_heldout": "rebuild_heldout", "force": "force"}

DAGS: dict[str, tuple[Task, ...]] = {
    "ingest_daily": (
        Task("discover", discover),
        Task("ingest", ingest, inputs={"inputs": "discover"}, mapped_over="inputs"),
        Task(
            "announce_clips",
            announce,
            inputs={"results": "ingest"},
            options={"count_key": "clips", "ids_key": "clip_ids"},
            needs_context=False,
        ),
    ),
    "detect_triggers": (
        Task("score_and_select", score_and_select),
        Task(
            "announce_selected",
            announce,
            inputs={"results": "score_and_select"},
            options={"count_key": "selected"},
            needs_context=False,
        ),
    ),
    "retrain_anomaly": (Task("train_anomaly", train_anomaly),),
    "autolabel": (
        Task("list_selected", list_clips, options={"stage": "selected", "batch_size": 64}),
        Task("autolabel", autolabel, inputs={"clip_ids": "list_selected"}, mapped_over="clip_ids"),
        Task(
            "announce_autolabelled",
            announce,
            inputs={"results": "autolabel"},
            options={"count_key": "clips"},
            needs_context=False,
        ),
    ),
    "review_export": (
        Task("export", export_for_review),
        Task(
            "announce_in_review",
            announce,
            inputs={"results": "export"},
            options={"count_key": "exported"},
            needs_context=False,
        ),
    ),
    "review_import": (Task("import_reviews", import_reviews),),
    "one_click_train": (
        Task("build_dataset", build_dataset, params=_TRAIN_PARAMS),
        Task("train", train, inputs={"dataset": "build_dataset"}, params={"nproc": "nproc"}),
        Task("evaluate", evaluate, inputs={"model_id": "train"}),
        Task("promote", promote, inputs={"model_id": "train"}),
        Task("summarise", summarise, inputs={"dataset": "build_dataset", "model_id": "train"}),
    ),
}


def _run_task(ctx: Context, task: Task, results: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = dict(task.options)
    kwargs.update({name: results[upstream] for name, upstream in task.inputs.items()})
    kwargs.update({name: params[param] for name, param in task.params.items() if params.get(param)})
    args = (ctx,) if task.needs_context else ()
    if task.mapped_over is None:
        return task.call(*args, **kwargs)
    items = kwargs.pop(task.mapped_over)
    return [task.call(*args, **{**kwargs, task.mapped_over: item}) for item in items]


def run_dag(
    ctx: Context,
    dag_id: str,
    params: Mapping[str, Any] | None = None,
    *,
    table: Mapping[str, Sequence[Task]] = DAGS,
) -> dict[str, Any]:
    """Run the tasks of DAG ``dag_id`` in order, in-process; returns each finished task's result.

    A task that has nothing to do ends the run (what follows it depends on it), as a skip does in Airflow.
    """
    tasks = table.get(dag_id)
    if tasks is None:
        raise KeyError(f"unknown DAG {dag_id!r}; DAGs are {', '.join(sorted(table))}")
    results: dict[str, Any] = {}
    for task in tasks:
        try:
            results[task.task_id] = _run_task(
                ctx.with_run(f"{ctx.run_id}/{task.task_id}"), task, results, params or {}
            )
        except NothingToDoError as exc:
            log.info("%s/%s skipped: %s", dag_id, task.task_id, exc)
            break
    return results
