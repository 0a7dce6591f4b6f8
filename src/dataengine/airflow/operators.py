"""Airflow operators: each one holds a task's parameters and calls one stage's Python API.

Heavy imports (torch, av, the stages) happen inside ``execute``: Airflow parses DAG files constantly.
XCom carries ids, counts and URIs, never frames. Every stage call is idempotent, so retries are safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import XComArg
    from airflow.sdk.definitions.context import Context as AirflowContext

    from dataengine.context import Context


def airflow_run_id(context: AirflowContext) -> str:
    """``dag_id/run_id/task_id[map_index]``: the run id written into lineage events."""
    ti = context["ti"]
    run_id = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
    map_index = getattr(ti, "map_index", -1)
    return f"{run_id}[{map_index}]" if map_index is not None and map_index >= 0 else run_id


def rendered(value: Any) -> str | None:
    """A templated field's value after rendering: the XCom string, or None when unset."""
    return None if value in (None, "") else str(value)


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    """``items`` in consecutive batches of at most ``size``: the unit of dynamic task mapping."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class StageOperator(BaseOperator):
    """Base: opens a dataengine Context for the task and maps our errors onto Airflow's."""

    ui_color = "#e8f1fb"

    def execute(self, context: AirflowContext) -> Any:
        from dataengine.context import Context
        from dataengine.errors import DataEngineError

        ctx = Context.create(run_id=airflow_run_id(context), actor="airflow")
        try:
            return self.run_stage(ctx, context)
        except DataEngineError as exc:
            if exc.retryable:
                raise AirflowException(f"{type(exc).__name__}: {exc}") from exc
            # Bad input or a broken contract: retrying the same call cannot help.
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        finally:
            ctx.close()

    def run_stage(self, ctx: Context, context: AirflowContext) -> Any:
        """The task's work; returns the XCom value."""
        raise NotImplementedError


class DiscoverVideosOperator(StageOperator):
    """Lists new landing videos in batches for the mapped ingest tasks; skips when there are none."""

    def __init__(self, *, batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size

    def run_stage(self, ctx: Context, context: AirflowContext) -> list[list[str]]:
        from dataengine.ingest import discover

        keys = discover(ctx)
        self.log.info("%d new video(s) in %s", len(keys), ctx.store.uri(ctx.settings.landing_prefix))
        if not keys:
            raise AirflowSkipException("no new videos in landing/")
        return batches(keys, self.batch_size or ctx.settings.ingest_batch_size)


class IngestOperator(StageOperator):
    """Ingests a batch of videos (store keys); returns the report's counts."""

    template_fields: Sequence[str] = ("inputs",)

    def __init__(self, *, inputs: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.ingest import ingest

        report = ingest(ctx, self.inputs)
        self.log.info("%s", report.summary())
        # Clips of the videos this task completed, with those an earlier, failed try registered:
        # no Asset event has named them yet.
        clip_ids = [*report.existing_clips, *report.clips]
        return {
            "videos": len(report.videos),
            "clips": len(clip_ids),
            "quarantined": len(report.quarantined),
            "clip_ids": sorted(clip_ids),
        }


class AnnounceOperator(StageOperator):
    """Sums a count over upstream results; skips (so its outlets emit no Asset event) when it is zero."""

    template_fields: Sequence[str] = ("results",)

    def __init__(self, *, results: Any, count_key: str, ids_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results
        self.count_key = count_key
        self.ids_key = ids_key

    def execute(self, context: AirflowContext) -> int:
        # Mapped upstreams give a lazy XCom sequence, not a list.
        results = [self.results] if isinstance(self.results, dict) else list(self.results or [])
        total = sum(int(r.get(self.count_key, 0)) for r in results if isinstance(r, dict))
        self.log.info("%s: %d", self.count_key, total)
        if total == 0:
            raise AirflowSkipException(f"no new {self.count_key}: nothing to announce downstream")
        if self.ids_key is not None:
            # The Asset event names what is new, so a consumer can pick exactly those ids up.
            ids = sorted({i for r in results if isinstance(r, dict) for i in r.get(self.ids_key, [])})
            for outlet in self.outlets:
                context["outlet_events"][outlet].extra = {self.ids_key: ids}
        return total


class TriggersOperator(StageOperator):
    """Scores new clips with the data triggers and selects under the budget."""

    def __init__(
        self, *, budget_fraction: float | None = None, budget_count: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.budget_fraction = budget_fraction
        self.budget_count = budget_count

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.triggers import run_triggers

        report = run_triggers(ctx, budget_fraction=self.budget_fraction, budget_count=self.budget_count)
        self.log.info("%s", report.summary())
        if not report.scored and not report.selected and not report.rejected and not report.quarantined:
            raise AirflowSkipException("no new clips to score")
        return {
            "scored": len(report.scored),
            "selected": len(report.selected),
            "rejected": len(report.rejected),
            "skipped_triggers": report.skipped_triggers,
        }


class RetrainAnomalyOperator(StageOperator):
    """Retrains the anomaly trigger's autoencoder on recent clips; skips when there are none."""

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.triggers.anomaly_task import train_anomaly

        report = train_anomaly(ctx)
        self.log.info("%s", report.summary())
        if report.n_clips == 0:
            raise AirflowSkipException(report.reason)
        return {"model_id": report.model_id, "trained": report.trained, "clips": report.n_clips}


class ListClipsOperator(StageOperator):
    """Lists clips in a stage, in batches for mapped tasks; skips when there are none."""

    def __init__(self, *, stage: str, batch_size: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.batch_size = batch_size

    def run_stage(self, ctx: Context, context: AirflowContext) -> list[list[str]]:
        from dataengine.lineage.clips import list_clips

        with ctx.db.session() as session:
            clip_ids = [clip.id for clip in list_clips(session, stage=self.stage)]
        self.log.info("%d clip(s) in stage %s", len(clip_ids), self.stage)
        if not clip_ids:
            raise AirflowSkipException(f"no clips in stage {self.stage}")
        return batches(clip_ids, self.batch_size)


class AutolabelOperator(StageOperator):
    """Autolabels a batch of selected clips with the promoted model."""

    template_fields: Sequence[str] = ("clip_ids",)

    def __init__(self, *, clip_ids: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip_ids = clip_ids

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.autolabel import autolabel

        report = autolabel(ctx, clip_ids=self.clip_ids)
        self.log.info("%s", report.summary())
        return {"clips": len(report.clips), "boxes": report.n_boxes, "model_id": report.model_id}


#: Airflow Connections holding the review platforms' secrets.
ENCORD_CONN_ID = "encord_default"
LABELSTUDIO_CONN_ID = "labelstudio_default"


def _connection(conn_id: str) -> Any:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def with_review_credentials(ctx: Context, platform: str | None) -> Context:
    """``ctx`` with the review platform's secret from its Airflow Connection, when there is one.

    ``encord_default``: the SSH private key in the password (or the extra ``ssh_private_key``).
    ``labelstudio_default``: the server's URL as host, the access token as password. Without a
    Connection the settings' own values (environment variables) stay. Secrets are never logged.
    """
    from dataclasses import replace

    from pydantic import SecretStr

    chosen = platform or ctx.settings.review_platform
    updates: dict[str, Any] = {}
    if chosen == "encord" and ctx.settings.encord_ssh_key is None:
        conn = _connection(ENCORD_CONN_ID)
        key = (conn.password or conn.extra_dejson.get("ssh_private_key")) if conn is not None else None
        if key:
            updates["encord_ssh_key"] = SecretStr(key)
    elif chosen == "labelstudio" and ctx.settings.labelstudio_api_key is None:
        conn = _connection(LABELSTUDIO_CONN_ID)
        if conn is not None and conn.password:
            updates["labelstudio_api_key"] = SecretStr(conn.password)
            if conn.host and not ctx.settings.labelstudio_url:
                scheme = conn.conn_type if conn.conn_type in ("http", "https") else "http"
                host = conn.host if "://" in conn.host else f"{scheme}://{conn.host}"
                updates["labelstudio_url"] = f"{host}:{conn.port}" if conn.port else host
    if not updates:
        return ctx
    return replace(ctx, settings=ctx.settings.model_copy(update=updates))


class ReviewExportOperator(StageOperator):
    """Pushes autolabelled clips and their pre-labels to the review platform.

    Platform rate limits and outages raise retryable errors, so Airflow retries the task.
    """

    def __init__(self, *, platform: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.review import export_for_review

        ctx = with_review_credentials(ctx, self.platform)
        report = export_for_review(ctx, platform=self.platform)
        self.log.info("%s", report.summary())
        return {"exported": len(report.exported), "platform": report.platform}


class ReviewImportOperator(StageOperator):
    """Pulls completed reviews and writes them as new annotation versions.

    On the ``simulated`` platform (``DATAENGINE_REVIEW_PLATFORM=simulated``) a SIMULATED reviewer
    answers from synthetic ground truth: for demos and tests only.
    """

    def __init__(self, *, platform: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.review import import_reviews

        ctx = with_review_credentials(ctx, self.platform)
        report = import_reviews(ctx, platform=self.platform)
        self.log.info("%s", report.summary())
        if not report.imported and not report.failed:
            raise AirflowSkipException("no completed reviews to import")
        return {
            "imported": len(report.imported),
            "boxes_changed": report.boxes_changed,
            "failed": len(report.failed),
            "simulated": report.simulated,
        }


class BuildDatasetOperator(StageOperator):
    """Snapshots the reviewed clips as a new dataset version; returns ``name@version``."""

    def __init__(self, *, dataset_name: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_name = dataset_name

    def run_stage(self, ctx: Context, context: AirflowContext) -> str:
        from dataengine.training import build_dataset
        from dataengine.training.summary import decided_model_for

        params = context.get("params") or {}
        ref = build_dataset(
            ctx,
            name=str(params.get("dataset_name") or self.dataset_name),
            rebuild_heldout=bool(params.get("rebuild_heldout")),
        )
        self.log.info(
            "dataset %s: %d clips (%d train, %d val), %s; diff %s; held-out set %s",
            ref.dataset_id,
            ref.n_clips,
            ref.n_train,
            ref.n_val,
            "new" if ref.created else "unchanged",
            ref.diff,
            ref.heldout_id,
        )
        decided = None if ref.created or params.get("force") else decided_model_for(ctx, ref.dataset_id)
        if decided is not None:
            raise AirflowSkipException(
                f"no new reviewed data: {ref.dataset_id} has the same clips as before and model {decided} "
                "was already trained and decided on it; trigger with force=true to train again"
            )
        return ref.dataset_id


class TrainOperator(StageOperator):
    """Trains a detector with torchrun DDP on a dataset version; returns the model id.

    ``node_rank`` > 0 makes the task one more node of a multi-node job (``DATAENGINE_TRAIN_NNODES``):
    it joins node 0's rendezvous and returns the same model id, which node 0 registers.
    """

    template_fields: Sequence[str] = ("dataset",)

    def __init__(
        self,
        *,
        dataset: str | XComArg | None = None,
        nproc: int | None = None,
        node_rank: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.nproc = nproc
        self.node_rank = node_rank

    def run_stage(self, ctx: Context, context: AirflowContext) -> str:
        from dataengine.training import train

        params = context.get("params") or {}
        nproc = params.get("nproc") or self.nproc
        result = train(
            ctx,
            dataset=rendered(self.dataset),
            nproc=int(nproc) if nproc else None,
            node_rank=self.node_rank,
        )
        self.log.info(
            "model %s on %s (%s)",
            result.model_id,
            result.dataset_id,
            "trained" if result.created else "exists",
        )
        return result.model_id


class EvaluateOperator(StageOperator):
    """Scores a candidate and the promoted model on both held-out sets; returns both models' mAPs.

    With ``dataset`` it only scores the model on that dataset's regression held-out set.
    """

    template_fields: Sequence[str] = ("model_id", "dataset")

    def __init__(
        self, *, model_id: str | XComArg, dataset: str | XComArg | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.dataset = dataset

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.training import evaluate, evaluate_candidate

        dataset = rendered(self.dataset)
        if dataset:
            result = evaluate(ctx, model_id=str(self.model_id), dataset=dataset)
            self.log.info("%s", result.summary())
            return result.to_dict()
        comparison = evaluate_candidate(ctx, model_id=str(self.model_id))
        for line in comparison.summary().splitlines():
            self.log.info("%s", line)
        regression, edge = comparison.regression, comparison.edge_case
        return {
            "held_out": comparison.held_out,
            "map": regression.candidate.map,
            "per_class": regression.candidate.to_dict()["per_class"],
            "previous_model_id": comparison.promoted_model_id,
            "previous_map": regression.promoted.map if regression.promoted else None,
            "edge_case": edge.label if edge else None,
            "edge_map": edge.candidate.map if edge else None,
            "previous_edge_map": edge.promoted.map if edge and edge.promoted else None,
        }


class PromoteOperator(StageOperator):
    """Promotes the model when it passes the promotion gate against the promoted one."""

    template_fields: Sequence[str] = ("model_id",)

    def __init__(self, *, model_id: str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        from dataengine.training import promote_if_better

        decision = promote_if_better(ctx, model_id=str(self.model_id))
        self.log.info("%s", decision.summary())
        return decision.to_dict()


class SummariseOperator(StageOperator):
    """Writes the round's report (dataset diff, metrics before and after, decision) to the task log."""

    template_fields: Sequence[str] = ("dataset", "model_id")

    def __init__(self, *, dataset: str | XComArg, model_id: str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.model_id = model_id

    def run_stage(self, ctx: Context, context: AirflowContext) -> str:
        from dataengine.training.summary import summarise_round

        report = summarise_round(ctx, dataset_id=str(self.dataset), model_id=str(self.model_id))
        for line in report.splitlines():
            self.log.info("%s", line)
        return report
