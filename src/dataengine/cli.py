"""``dataengine``: every stage of the loop from the command line, without Airflow.

Each command prints a short human summary, or JSON with ``--json``. It exits 1 when it could do nothing
it was asked to do and 2 on bad usage; a partial success (some inputs quarantined) exits 0.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from dataengine.cli_model import add_model_commands
from dataengine.errors import ConfigError, DataEngineError
from dataengine.progress import terminal_progress

if TYPE_CHECKING:  # The engine (SQLAlchemy, settings, storage) loads only when a command needs it.
    from dataengine.config import Settings
    from dataengine.context import Context
    from dataengine.ingest.ahead import DecodeAhead

app = typer.Typer(
    name="dataengine",
    help="A self-hosted data engine for computer vision teams that learn from video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich's help panels cost 0.15 s of imports on every --help and usage error.
    rich_markup_mode=None,
)
review_app = typer.Typer(
    help="Send clips to review and bring reviewed labels back.", no_args_is_help=True, rich_markup_mode=None
)
dataset_app = typer.Typer(help="Versioned dataset snapshots.", no_args_is_help=True, rich_markup_mode=None)
clip_app = typer.Typer(help="One clip.", no_args_is_help=True, rich_markup_mode=None)
clips_app = typer.Typer(help="Many clips.", no_args_is_help=True, rich_markup_mode=None)
quarantine_app = typer.Typer(
    help="Inputs that were refused, and why.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(review_app, name="review")
app.add_typer(dataset_app, name="dataset")
app.add_typer(clip_app, name="clip")
app.add_typer(clips_app, name="clips")
app.add_typer(quarantine_app, name="quarantine")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _positive(text: str) -> float:
    """A number above 0 (a usage error otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None
    if not value > 0:
        raise typer.BadParameter(f"{text} is not above 0")
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _exit_code(exc: DataEngineError) -> int:
    """2 for bad usage (an invalid option or setting), 1 for everything else that stopped a command."""
    return 2 if isinstance(exc, ConfigError) else 1


@contextmanager
def _context(settings: Settings | None = None) -> Iterator[Context]:
    from dataengine.context import Context

    try:
        ctx = Context.create(settings)
    except DataEngineError as exc:
        _fail(str(exc), _exit_code(exc))
    try:
        yield ctx
    except DataEngineError as exc:
        _fail(str(exc), _exit_code(exc))
    finally:
        ctx.close()


def _emit(value: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    if as_json:
        typer.echo(json.dumps(value, indent=2, default=str))
    else:
        typer.echo(human(value))


add_model_commands(app, _context, _emit)


# Set-up --------------------------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the store folder and migrate the lineage database to the newest schema."""
    with _context() as ctx:
        revision = ctx.db.current_revision()
        typer.echo(f"lineage database at revision {revision}; store at {ctx.store.url}")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Counts of videos and clips per stage, quarantined inputs and models."""
    from dataengine.lineage.views.reports import status_summary

    with _context() as ctx, ctx.db.session() as session:
        summary = status_summary(session)
    _emit(summary, as_json, _status_text)


def _status_text(summary: dict[str, Any]) -> str:
    stages = ", ".join(f"{k} {v}" for k, v in summary["stages"].items() if v)
    lines = [
        f"{summary['videos']} videos, {summary['clips']} clips, {summary['quarantined']} quarantined",
        f"stages: {stages or 'none'}",
        f"promoted model: {summary['promoted_model'] or 'none yet'}",
    ]
    for model in summary["models"]:
        lines += _model_lines(model)
    return "\n".join(lines)


def _model_lines(model: dict[str, Any]) -> list[str]:
    """A model's status and, per held-out set, its mAP and every class's AP with its support."""
    from dataengine.training.metrics import Evaluation, format_map

    metrics = model["metrics"] or {}
    head = f"  {model['id']}  {model['status']:<9}"
    sets = [
        (kind, Evaluation.from_dict(metrics[key]))
        for kind, key in (("regression", "eval"), ("edge cases", "edge_eval"))
        if isinstance(metrics.get(key), dict)
    ]
    if not sets:
        return [f"{head}  not evaluated"]
    lines = []
    for kind, scores in sets:
        per_class = ", ".join(score.text() for score in scores.classes)
        lines.append(
            f"{head}  {kind}: mAP {format_map(scores.map)}  mAP@.5 {format_map(scores.map50)} on "
            f"{scores.held_out or metrics.get('held_out', '')}" + (f"; {per_class}" if per_class else "")
        )
        head = " " * len(head)
    return lines


# Stages -------------------------------------------------------------------------------------------


@app.command()
def ingest(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Files, store keys or URIs; default: new in landing/")
    ] = None,
    clip_seconds: Annotated[
        float | None,
        typer.Option(help="Clip length in seconds.", parser=_positive),
    ] = None,
    sample_fps: Annotated[
        float | None, typer.Option(help="Frames sampled per second; 0 = every frame.", min=0)
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Also check every ingested video and rebuild clips with missing objects.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cut videos into clips, sample frames and register everything in lineage."""
    ahead, settings = _decode_ahead(inputs, clip_seconds, sample_fps)
    try:
        from dataengine.ingest import ingest as run_ingest

        with _context(settings) as ctx, terminal_progress(not as_json) as progress:
            report = run_ingest(
                ctx,
                inputs or None,
                clip_seconds=clip_seconds,
                sample_fps=sample_fps,
                repair=repair,
                progress=progress,
                ahead=ahead,
            )
    finally:
        if ahead is not None:
            ahead.close()
    _emit(report.to_dict(), as_json, lambda _: report.summary())
    # Named inputs that all failed, or a landing folder whose new videos were all refused.
    if (inputs or report.quarantined) and not report.did_anything:
        raise typer.Exit(1)


def _decode_ahead(
    inputs: list[str] | None, clip_seconds: float | None, sample_fps: float | None
) -> tuple[DecodeAhead | None, Settings | None]:
    """Start decoding the first input when it is a local file, before the database layer is imported
    (ingest/ahead.py); the settings read for it, to be used for the rest of the command."""
    if not inputs:
        return None, None
    from dataengine.config import load_settings
    from dataengine.ingest.ahead import DecodeAhead
    from dataengine.ingest.prepare import ingest_params

    try:
        settings = load_settings()
        params = ingest_params(settings, clip_seconds, sample_fps)
    except DataEngineError:
        return None, None  # Reported by the command itself, as without decoding ahead.
    return DecodeAhead.start(inputs[0], params), settings


triggers_app = typer.Typer(
    help="Data triggers: score new clips and select under the budget.", rich_markup_mode=None
)
app.add_typer(triggers_app, name="triggers")


@triggers_app.callback(invoke_without_command=True)
def triggers(
    command: typer.Context,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Fraction of scored clips to select.", min=0, max=1)
    ] = None,
    budget_count: Annotated[
        int | None, typer.Option("--budget-count", help="Number of clips to select.", min=0)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Score every ingested clip with the data triggers and select under the budget."""
    if command.invoked_subcommand is not None:
        return
    from dataengine.triggers import run_triggers

    with _context() as ctx:
        report = run_triggers(ctx, budget_fraction=budget, budget_count=budget_count)
    _emit(report.to_dict(), as_json, lambda _: report.summary())


@triggers_app.command("timeline")
def triggers_timeline(
    video_id: Annotated[str, typer.Argument(help="Video id.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
) -> None:
    """Plot each trigger's score along a video, one line per trigger, with the selected clips shaded."""
    from dataengine.triggers.timeline import build_timeline, plot_timeline

    with _context() as ctx, ctx.db.session() as session:
        timeline = build_timeline(session, video_id)
    plot_timeline(timeline, out)
    typer.echo(f"{out}: {len(timeline.clip_ids)} clip(s), {sum(timeline.selected)} selected")


@triggers_app.command("train-anomaly")
def triggers_train_anomaly(
    clips: Annotated[int | None, typer.Option(help="Recent clips to train on.", min=1)] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.", min=1)] = None,
    as_json: JsonFlag = False,
) -> None:
    """(Re)train the anomaly trigger's autoencoder on the most recently ingested clips."""
    from dataengine.triggers.anomaly_task import train_anomaly

    with _context() as ctx:
        report = train_anomaly(ctx, n_clips=clips, epochs=epochs)
    _emit(report.to_dict(), as_json, lambda _: report.summary())
    if report.model_id is None:
        raise typer.Exit(1)


@app.command()
def autolabel(
    clip: Annotated[list[str] | None, typer.Option("--clip", help="Clip id; repeat for more.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Label the selected clips (or the named ones) with the promoted model."""
    from dataengine.autolabel import autolabel as run_autolabel

    with _context() as ctx, terminal_progress(not as_json) as progress:
        report = run_autolabel(ctx, clip_ids=clip or None, progress=progress)
    _emit(report.to_dict(), as_json, lambda _: report.summary())
    if clip and not report.clips and not report.skipped:
        raise typer.Exit(1)


@review_app.command("export")
def review_export(
    platform: Annotated[str | None, typer.Option(help="local, encord, labelstudio or simulated.")] = None,
    prelabels: Annotated[
        bool,
        typer.Option(
            help="Send the autolabels as pre-labels; --no-prelabels sends the selected and autolabelled "
            "clips with none, to label from scratch (without a model that is what happens anyway)."
        ),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Push autolabelled clips and their pre-labels (or selected clips, empty) to the review platform."""
    from dataengine.review import export_for_review

    with _context() as ctx, terminal_progress(not as_json) as progress:
        report = export_for_review(ctx, platform=platform, prelabels=prelabels, progress=progress)
    _emit(report.to_dict(), as_json, lambda _: report.summary())


@review_app.command("import")
def review_import(
    platform: Annotated[
        str | None,
        typer.Option(help="local, encord, labelstudio, or simulated (a SIMULATION, for demos)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="A label export file: Encord's JSON list of label rows, Label Studio's JSON export."
        ),
    ] = None,
    open_tasks_only: Annotated[
        bool,
        typer.Option(
            "--open-tasks-only",
            help="With --file: import only rows of clips with an open review task; skip the others "
            "(by default they become new labels with source import).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Pull completed reviews and write them as new annotation versions."""
    from dataengine.review import import_reviews

    with _context() as ctx, terminal_progress(not as_json) as progress:
        kwargs: dict[str, Any] = {"platform": platform, "progress": progress}
        if file is not None:
            kwargs.update(file=file, open_tasks_only=open_tasks_only)
        report = import_reviews(ctx, **kwargs)
    _emit(report.to_dict(), as_json, lambda _: report.summary())
    # A file of which nothing new could be imported; rows imported by an earlier run are no failure.
    if file is not None and not report.imported and (report.failed or report.skipped or report.still_refused):
        raise typer.Exit(1)


@review_app.command("report")
def review_report(
    since: Annotated[
        datetime | None, typer.Option(help="Only reviews imported at or after this date (UTC).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also plot the edit rate per model version (PNG).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Review tasks per platform, and what reviewers changed per reviewer and per model version."""
    from dataengine.review import review_report as build_report
    from dataengine.review.report import plot_edit_rate

    with _context() as ctx:
        report = build_report(ctx, since=since.replace(tzinfo=since.tzinfo or UTC) if since else None)
        if out is not None:
            report = report.with_plot(plot_edit_rate(report, out))
    _emit(report.to_dict(), as_json, lambda _: report.summary())


@review_app.command("status")
def review_status(
    platform: Annotated[str | None, typer.Option(help="local, encord, labelstudio or simulated.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask the review platform where each open task stands (pending, completed or missing)."""
    from dataengine.review import open_task_status

    with _context() as ctx:
        rows = open_task_status(ctx, platform=platform)
    _emit(
        rows,
        as_json,
        lambda _: (
            "\n".join(f"{r['clip_id']}: {r['status']} {r['url']}" for r in rows) or "no open review tasks"
        ),
    )


@dataset_app.command("build")
def dataset_build(
    name: Annotated[str, typer.Option(help="Dataset name.")] = "default",
    rebuild_heldout: Annotated[
        bool,
        typer.Option(
            help="Freeze a new regression set from today's val split and start the edge-case set again "
            "from its clips that came in through a trigger."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Snapshot every reviewed clip as a new dataset version; prints NAME@VERSION last."""
    from dataclasses import asdict

    from dataengine.training import build_dataset

    with _context() as ctx, terminal_progress(not as_json) as progress:
        ref = build_dataset(ctx, name=name, rebuild_heldout=rebuild_heldout, progress=progress)
    if as_json:
        typer.echo(json.dumps(asdict(ref), indent=2))
        return
    state = "new version" if ref.created else "unchanged, same clips as"
    typer.echo(f"{ref.n_clips} clips ({ref.n_train} train, {ref.n_val} val), {ref.n_boxes} boxes: {state}")
    if ref.created and ref.diff:
        diff = ref.diff
        typer.echo(
            f"since {diff.get('previous') or '(nothing)'}: +{diff.get('added', 0)} added, "
            f"-{diff.get('removed', 0)} removed, ~{diff.get('relabelled', 0)} relabelled"
        )
    typer.echo(f"held-out set: {ref.heldout_id or 'none (no val videos yet)'}")
    typer.echo(f"edge-case set: {ref.edge_cases_id or 'none (no val clip came in through a trigger yet)'}")
    typer.echo(ref.dataset_id)


@dataset_app.command("diff")
def dataset_diff(
    base: Annotated[str, typer.Argument(help="The older version, NAME@VERSION.")],
    target: Annotated[str, typer.Argument(help="The newer version, NAME@VERSION or NAME (newest).")],
    as_json: JsonFlag = False,
) -> None:
    """Clips added, removed and relabelled between two dataset versions."""
    from dataengine.training import diff_datasets

    with _context() as ctx:
        diff = diff_datasets(ctx, base, target)

    def human(d: Any) -> str:
        lines = [d.summary_line()]
        lines += [f"+ {clip} v{version}" for clip, version in d.added]
        lines += [f"- {clip} v{version}" for clip, version in d.removed]
        lines += [f"~ {clip} v{old} -> v{new}" for clip, old, new in d.relabelled]
        return "\n".join(lines)

    _emit(diff.to_dict() if as_json else diff, as_json, human)


@app.command()
def train(
    dataset: Annotated[
        str | None, typer.Option(help="NAME@VERSION or NAME (latest); default: default.")
    ] = None,
    nproc: Annotated[
        int | None, typer.Option(help="DDP processes (torchrun --nproc_per_node).", min=1)
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.", min=1)] = None,
    promote: Annotated[
        bool, typer.Option(help="Evaluate and promote if it beats the promoted model.")
    ] = True,
    node_rank: Annotated[
        int | None,
        typer.Option(
            help="This machine's node in a multi-node job (DATAENGINE_TRAIN_NNODES > 1); 0 registers."
        ),
    ] = None,
) -> None:
    """Train a detector with torchrun DDP; prints the model id last."""
    from dataengine.training import promote_if_better
    from dataengine.training import train as run_train

    with _context() as ctx:
        with terminal_progress() as progress:
            result = run_train(
                ctx, dataset=dataset, nproc=nproc, epochs=epochs, node_rank=node_rank, progress=progress
            )
        typer.echo(
            f"{'trained' if result.created else 'already trained'} on {result.dataset_id} "
            f"({result.n_train_frames} frames, {result.train_seconds:.0f} s)"
        )
        if promote and not node_rank:
            decision = promote_if_better(ctx, model_id=result.model_id)
            typer.echo(decision.summary())
    typer.echo(result.model_id)


@app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="Model id.")],
    dataset: Annotated[
        str | None, typer.Option(help="NAME@VERSION or NAME; default: the model's dataset.")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="heldout (the frozen regression set), edgecases (the edge-case set), val, train or all."
        ),
    ] = "heldout",
    as_json: JsonFlag = False,
) -> None:
    """COCO mAP of a model on a dataset split, with each class's AP and support (n/a without examples)."""
    from dataengine.training import evaluate as run_evaluate

    with _context() as ctx:
        result = run_evaluate(ctx, model_id=model, dataset=dataset, split=split)
    _emit(result.to_dict(), as_json, lambda _: result.table())


# Lineage views ------------------------------------------------------------------------------------


@clips_app.command("list")
def clips_list(
    stage: Annotated[str | None, typer.Option(help="Only clips in this stage.")] = None,
    video: Annotated[str | None, typer.Option(help="Only clips of this video id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Clips with their frame range and stage."""
    from dataengine.lineage import CLIP_STAGES
    from dataengine.lineage.clips import list_clips
    from dataengine.lineage.views.reports import clip_to_dict

    if stage is not None and stage not in CLIP_STAGES:
        _fail(f"no stage {stage!r}; stages are {', '.join(CLIP_STAGES)}", 2)

    with _context() as ctx, ctx.db.session() as session:
        rows = [clip_to_dict(c) for c in list_clips(session, stage=stage, video_id=video)]
    _emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(f"{r['clip_id']}  frames {r['start_frame']}-{r['end_frame']}  {r['stage']}" for r in rs)
            or "no clips"
        ),
    )


@clip_app.command("show")
def clip_show(clip_id: Annotated[str, typer.Argument(help="Clip id.")], as_json: JsonFlag = False) -> None:
    """One clip's whole history, from ingest to the datasets and models it went into."""
    from dataengine.lineage.views.reports import clip_history

    with _context() as ctx, ctx.db.session() as session:
        history = clip_history(session, clip_id)
    _emit(history, as_json, _history_text)


def _history_text(history: dict[str, Any]) -> str:
    clip = history["clip"]
    lines = [
        f"clip {clip['clip_id']}  video {clip['video_id']}  frames {clip['start_frame']}-{clip['end_frame']}"
        f"  stage {clip['stage']}",
        "history:",
    ]
    for event in history["events"]:
        details = ", ".join(f"{k}={v}" for k, v in event["details"].items())
        lines.append(
            f"  {event['at'][:19]}  {event['stage']:<12} {event['status']:<8} "
            f"{event['run_id'] or ''}  {details}"
        )
    if history["triggers"]:
        lines.append(
            "triggers: " + ", ".join(f"{t['trigger']} {t['score']:.3f}" for t in history["triggers"])
        )
    for ann in history["annotations"]:
        lines.append(f"annotation v{ann['version']}: {ann['source']}, {ann['n_boxes']} boxes  {ann['uri']}")
    for ds in history["datasets"]:
        lines.append(f"dataset {ds['dataset_id']} ({ds['split']}, annotation v{ds['annotation_version']})")
    return "\n".join(lines)


@quarantine_app.command("list")
def quarantine_list(as_json: JsonFlag = False) -> None:
    """Every refused input and the reason."""
    from dataengine.lineage.views.reports import quarantine_list as listing

    with _context() as ctx, ctx.db.session() as session:
        rows = listing(session)
    _emit(
        rows,
        as_json,
        lambda rs: "\n".join(f"{r['input']}: {r['reason']}" for r in rs) or "nothing quarantined",
    )


@app.command()
def synthetic(
    videos: Annotated[int, typer.Option(help="How many videos to render.", min=1)] = 4,
    seed: Annotated[int, typer.Option(help="Seed; the same seed renders the same bytes.")] = 0,
    seconds: Annotated[float, typer.Option(help="Length of each video.", parser=_positive)] = 10.0,
    day: Annotated[str, typer.Option(help="Recording day in the landing path, YYYY-MM-DD.")] = "2026-11-22",
) -> None:
    """Render synthetic videos with ground truth into landing/ (for trying the engine out)."""
    from dataengine.synthetic import write_landing

    with _context() as ctx:
        keys = write_landing(
            ctx.store, n_videos=videos, seed=seed, seconds=seconds, start_day=day,
            prefix=ctx.settings.landing_prefix,
        )  # fmt: skip
    for key in keys:
        typer.echo(key)


# Demo ---------------------------------------------------------------------------------------------


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="Rounds of the loop after the bootstrap.", min=0)] = 2,
    workdir: Annotated[
        Path, typer.Option(help="Folder for the demo's store, database and Airflow home.")
    ] = Path(".dataengine/demo"),
    through: Annotated[
        str,
        typer.Option(
            help="airflow (dags test) or python (the stage APIs).", parser=_one_of("airflow", "python")
        ),
    ] = "airflow",
    as_json: JsonFlag = False,
) -> None:
    """The whole loop on synthetic video: bootstrap a model, then ROUNDS rounds through Airflow."""
    from dataengine.demo import DemoOptions, run_demo

    try:
        result = run_demo(DemoOptions(rounds=rounds, workdir=workdir, through=through), echo=typer.echo)
    except DataEngineError as exc:
        _fail(str(exc), _exit_code(exc))
    _emit(result.to_dict(), as_json, lambda _: result.table())


def main() -> None:
    """Console entry point."""
    try:
        app()
    except DataEngineError as exc:  # errors raised outside a command's own handling
        typer.echo(f"error: {exc}", err=True)
        sys.exit(_exit_code(exc))
    except Exception as exc:  # A bug: one line for the user, the traceback only when asked for.
        if os.environ.get("DATAENGINE_TRACEBACK"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (a bug in dataengine; "
            "set DATAENGINE_TRACEBACK=1 to see where, and please report it)",
            err=True,
        )
        sys.exit(1)
