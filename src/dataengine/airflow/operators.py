"""Airflow operators: each one holds a task's parameters and runs one task of :mod:`dataengine.workflow`.

``task_call`` names the workflow function an operator runs; the workflow's table of DAG id -> tasks is
what ``demo --through python`` runs too, and a test checks every DAG against it. Heavy imports (torch,
av, the stages) happen inside the workflow functions: Airflow parses DAG files constantly. XCom carries
ids, counts and URIs, never frames. Every stage call is idempotent, so retries are safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from dataengine import workflow

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


class StageOperator(BaseOperator):
    """Base: opens a dataengine Context for the task and maps our errors onto Airflow's."""

    ui_color = "#e8f1fb"
    #: The :mod:`dataengine.workflow` function this operator runs.
    task_call: ClassVar[Callable[..., Any]]

    def execute(self, context: AirflowContext) -> Any:
        from dataengine.context import Context
        from dataengine.errors import DataEngineError, NothingToDoError

        ctx = Context.create(run_id=airflow_run_id(context), actor="airflow")
        try:
            return self.run_stage(ctx, context)
        except NothingToDoError as exc:
            raise AirflowSkipException(str(exc)) from exc
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

    task_call = staticmethod(workflow.discover)

    def __init__(self, *, batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size

    def run_stage(self, ctx: Context, context: AirflowContext) -> list[list[str]]:
        return workflow.discover(ctx, batch_size=self.batch_size)


class IngestOperator(StageOperator):
    """Ingests a batch of videos (store keys); returns the report's counts."""

    task_call = staticmethod(workflow.ingest)

    template_fields: Sequence[str] = ("inputs",)

    def __init__(self, *, inputs: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.ingest(ctx, inputs=self.inputs)


class AnnounceOperator(StageOperator):
    """Sums a count over upstream results; skips (so its outlets emit no Asset event) when it is zero."""

    task_call = staticmethod(workflow.announce)

    template_fields: Sequence[str] = ("results",)

    def __init__(self, *, results: Any, count_key: str, ids_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results
        self.count_key = count_key
        self.ids_key = ids_key

    def execute(self, context: AirflowContext) -> int:
        from dataengine.errors import NothingToDoError

        # Mapped upstreams give a lazy XCom sequence, not a list.
        results = self.results if isinstance(self.results, dict) else list(self.results or [])
        try:
            total, ids = workflow.announce(results, count_key=self.count_key, ids_key=self.ids_key)
        except NothingToDoError as exc:
            raise AirflowSkipException(str(exc)) from exc
        if self.ids_key is not None:
            # The Asset event names what is new, so a consumer can pick exactly those ids up.
            extra: dict[str, Any] = {self.ids_key: ids}
            for outlet in self.outlets:
                context["outlet_events"][outlet].extra = extra
        return total


class TriggersOperator(StageOperator):
    """Scores new clips with the data triggers and selects under the budget."""

    task_call = staticmethod(workflow.score_and_select)

    def __init__(
        self, *, budget_fraction: float | None = None, budget_count: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.budget_fraction = budget_fraction
        self.budget_count = budget_count

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.score_and_select(
            ctx, budget_fraction=self.budget_fraction, budget_count=self.budget_count
        )


class RetrainAnomalyOperator(StageOperator):
    """Retrains the anomaly trigger's autoencoder on recent clips; skips when there are none."""

    task_call = staticmethod(workflow.train_anomaly)

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.train_anomaly(ctx)


class ListClipsOperator(StageOperator):
    """Lists clips in a stage, in batches for mapped tasks; skips when there are none."""

    task_call = staticmethod(workflow.list_clips)

    def __init__(self, *, stage: str, batch_size: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.batch_size = batch_size

    def run_stage(self, ctx: Context, context: AirflowContext) -> list[list[str]]:
        return workflow.list_clips(ctx, stage=self.stage, batch_size=self.batch_size)


class AutolabelOperator(StageOperator):
    """Autolabels a batch of selected clips with the promoted model."""

    task_call = staticmethod(workflow.autolabel)

    template_fields: Sequence[str] = ("clip_ids",)

    def __init__(self, *, clip_ids: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip_ids = clip_ids

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.autolabel(ctx, clip_ids=self.clip_ids)


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

    task_call = staticmethod(workflow.export_for_review)

    def __init__(self, *, platform: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        ctx = with_review_credentials(ctx, self.platform)
        return workflow.export_for_review(ctx, platform=self.platform)


class ReviewImportOperator(StageOperator):
    """Pulls completed reviews and writes them as new annotation versions.

    On the ``simulated`` platform (``DATAENGINE_REVIEW_PLATFORM=simulated``) a SIMULATED reviewer
    answers from synthetic ground truth: for demos and tests only.
    """

    task_call = staticmethod(workflow.import_reviews)

    def __init__(self, *, platform: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.platform = platform

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        ctx = with_review_credentials(ctx, self.platform)
        return workflow.import_reviews(ctx, platform=self.platform)


class BuildDatasetOperator(StageOperator):
    """Snapshots the reviewed clips as a new dataset version; returns ``name@version``."""

    task_call = staticmethod(workflow.build_dataset)

    def __init__(self, *, dataset_name: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_name = dataset_name

    def run_stage(self, ctx: Context, context: AirflowContext) -> str:
        params = context.get("params") or {}
        return workflow.build_dataset(
            ctx,
            dataset_name=str(params.get("dataset_name") or self.dataset_name),
            rebuild_heldout=bool(params.get("rebuild_heldout")),
            force=bool(params.get("force")),
        )


class TrainOperator(StageOperator):
    """Trains a detector with torchrun DDP on a dataset version; returns the model id.

    ``node_rank`` > 0 makes the task one more node of a multi-node job (``DATAENGINE_TRAIN_NNODES``):
    it joins node 0's rendezvous and returns the same model id, which node 0 registers.
    """

    task_call = staticmethod(workflow.train)

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
        params = context.get("params") or {}
        nproc = params.get("nproc") or self.nproc
        return workflow.train(
            ctx, dataset=rendered(self.dataset), nproc=int(nproc) if nproc else None, node_rank=self.node_rank
        )


class EvaluateOperator(StageOperator):
    """Scores a candidate and the promoted model on both held-out sets; returns both models' mAPs.

    With ``dataset`` it only scores the model on that dataset's regression held-out set.
    """

    task_call = staticmethod(workflow.evaluate)

    template_fields: Sequence[str] = ("model_id", "dataset")

    def __init__(
        self, *, model_id: str | XComArg, dataset: str | XComArg | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id
        self.dataset = dataset

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.evaluate(ctx, model_id=str(self.model_id), dataset=rendered(self.dataset))


class PromoteOperator(StageOperator):
    """Promotes the model when it passes the promotion gate against the promoted one."""

    task_call = staticmethod(workflow.promote)

    template_fields: Sequence[str] = ("model_id",)

    def __init__(self, *, model_id: str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_id = model_id

    def run_stage(self, ctx: Context, context: AirflowContext) -> dict[str, Any]:
        return workflow.promote(ctx, model_id=str(self.model_id))


class SummariseOperator(StageOperator):
    """Writes the round's report (dataset diff, metrics before and after, decision) to the task log."""

    task_call = staticmethod(workflow.summarise)

    template_fields: Sequence[str] = ("dataset", "model_id")

    def __init__(self, *, dataset: str | XComArg, model_id: str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.model_id = model_id

    def run_stage(self, ctx: Context, context: AirflowContext) -> str:
        return workflow.summarise(ctx, dataset=str(self.dataset), model_id=str(self.model_id))
