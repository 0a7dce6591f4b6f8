"""The demo: the whole loop on synthetic video, on SQLite and a local folder, with no services to start.

Round 0 bootstraps a first model from a small seed of clips labelled with the renderer's ground truth.
Each later round drops new videos into ``landing/`` and runs the six DAGs in order with
``airflow dags test`` (or the same stage APIs in-process with ``through="python"``); the reviewer is a
SIMULATION that corrects the autolabels from the synthetic ground truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from dataengine.config import Settings, load_settings
from dataengine.context import Context
from dataengine.errors import DataEngineError
from dataengine.lineage.views.activity import activity_since
from dataengine.training.comparison import CandidateComparison
from dataengine.workflow import run_dag

_MARKER = ".dataengine-demo"
_DAG_ORDER = (
    "ingest_daily",
    "detect_triggers",
    "autolabel",
    "review_export",
    "review_import",
    "one_click_train",
)


@dataclass
class DemoOptions:
    """How big the demo is. The defaults finish in a few minutes on 2 CPU cores."""

    rounds: int = 2
    workdir: Path = Path(".dataengine/demo")
    through: str = "airflow"
    seed_videos: int = 6
    videos_per_round: int = 8
    video_seconds: float = 10.0
    fps: float = 10.0
    seed: int = 7
    #: The class the table follows: the synthetic scenes' rare class, which the rare_class trigger hunts.
    rare_class: str = "wheelchair"
    settings: dict[str, Any] = field(
        default_factory=lambda: {
            "clip_seconds": 2.0,
            "sample_fps": 5.0,
            "budget_fraction": 0.3,
            "val_fraction": 0.25,
            "train_nproc": 2,
        }
    )


@dataclass
class RoundStats:
    """One row of the demo table."""

    round: int
    videos: int = 0
    clips: int = 0
    selected: int = 0
    autolabelled_boxes: int = 0
    boxes_changed: int = 0
    dataset: str = ""
    dataset_clips: int = 0
    model_id: str = ""
    new_map: float | None = None
    previous_map: float | None = None
    new_map50: float | None = None
    #: The frozen regression set, and the rare class's AP and support on it (the same set every round).
    held_out: str = ""
    regression_rare_ap: float | None = None
    regression_rare_support: int | None = None
    #: The round's edge-case set (val clips that came in through a trigger), both models' mAP on it.
    edge_case: str = ""
    new_edge_map: float | None = None
    previous_edge_map: float | None = None
    #: The rare class on the round's edge-case set: the new and the promoted model's AP, and its support.
    rare_class: str = ""
    rare_ap: float | None = None
    previous_rare_ap: float | None = None
    rare_support: int | None = None
    #: The round's model on the last round's edge-case set, the same yardstick for every round.
    final_rare_ap: float | None = None
    final_rare_support: int | None = None
    final_edge_case: str = ""
    promoted: bool = False
    seconds: float = 0.0


@dataclass
class DemoResult:
    """Every round's numbers and the wall time."""

    rounds: list[RoundStats]
    wall_seconds: float
    workdir: str

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable form."""
        return {
            "rounds": [asdict(r) for r in self.rounds],
            "wall_seconds": self.wall_seconds,
            "workdir": self.workdir,
        }

    def table(self) -> str:
        """The per-round table the demo prints."""
        rare = next((r.rare_class for r in self.rounds if r.rare_class), "rare class")
        final = next((r.final_edge_case for r in self.rounds if r.final_edge_case), "")
        regression = next((r.held_out for r in self.rounds if r.held_out), "")
        header = (
            "round",
            "videos",
            "clips",
            "selected",
            "autolabel boxes",
            "boxes changed (sim. review)",
            "dataset",
            "dataset clips",
            "new mAP",
            "prev mAP",
            "new mAP@.5",
            f"{rare} AP on {regression or 'the regression set'}",
            "edge-case set",
            "new edge mAP",
            "prev edge mAP",
            f"{rare} AP (boxes)",
            f"prev {rare} AP",
            f"{rare} AP on {final or 'the last edge-case set'}",
            "promoted",
            "seconds",
        )
        rows = [header] + [_row(r) for r in self.rounds]
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
        lines = ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [
            "mAP: COCO mAP@[.5:.95] of the new model and of the model promoted before it, on the same frames "
            "of the frozen regression set; edge mAP: the same on the round's edge-case set (val clips that "
            "came in through a trigger, never trained on).",
            f"{rare} AP, with its support (ground-truth boxes): on the regression set (the same frames every "
            f"round), on the round's edge-case set (new and promoted model), and every round's model on "
            f"{final or 'the last edge-case set'}, so the rounds compare. n/a (0 examples): no {rare} box "
            "in the set, so nothing was measured.",
            "Review is SIMULATED from synthetic truth.",
            f"wall time {self.wall_seconds:.0f} s; data in {self.workdir}",
        ]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ap(ap: float | None, support: int | None, *, known: bool) -> str:
    """An AP with its support, n/a when the set had no example, "-" when there was no set to score on."""
    if not known:
        return "-"
    if ap is None:
        return "n/a (0 examples)" if not support else "n/a"
    return f"{ap:.3f} ({support} boxes)" if support is not None else f"{ap:.3f}"


def _row(stats: RoundStats) -> tuple[Any, ...]:
    name = "0 (bootstrap)" if stats.round == 0 else str(stats.round)
    selected = "seed" if stats.round == 0 else stats.selected
    edge = bool(stats.edge_case)
    return (
        name,
        stats.videos,
        stats.clips,
        selected,
        stats.autolabelled_boxes,
        stats.boxes_changed,
        stats.dataset,
        stats.dataset_clips,
        _fmt(stats.new_map),
        _fmt(stats.previous_map),
        _fmt(stats.new_map50),
        _ap(stats.regression_rare_ap, stats.regression_rare_support, known=bool(stats.held_out)),
        stats.edge_case or "none yet",
        _fmt(stats.new_edge_map),
        _fmt(stats.previous_edge_map),
        _ap(stats.rare_ap, stats.rare_support, known=edge),
        _ap(stats.previous_rare_ap, stats.rare_support, known=edge and stats.previous_map is not None),
        _ap(stats.final_rare_ap, stats.final_rare_support, known=bool(stats.final_edge_case)),
        "yes" if stats.promoted else "no",
        f"{stats.seconds:.0f}",
    )


# Environment --------------------------------------------------------------------------------------


def _prepare_workdir(workdir: Path) -> Path:
    workdir = workdir.resolve()
    if workdir.exists():
        if not (workdir / _MARKER).exists():
            raise DataEngineError(f"{workdir} exists and is not a demo folder; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / _MARKER).write_text("made by `dataengine demo`; deleted by the next run\n")
    return workdir


def _engine_env(options: DemoOptions, workdir: Path) -> dict[str, str]:
    env = {
        "DATAENGINE_DATABASE_URL": f"sqlite:///{workdir / 'lineage.db'}",
        "DATAENGINE_STORAGE_URL": f"file://{workdir / 'store'}",
        "DATAENGINE_REVIEW_PLATFORM": "simulated",
    }
    for name, value in options.settings.items():
        env[f"DATAENGINE_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, list | dict) else str(value)
        )
    return env


#: The demo engine's settings, for `make up DEMO=1` to open the same engine afterwards.
ENV_FILE = "engine.env"


def _write_env_file(workdir: Path, env: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in {**env, "AIRFLOW_HOME": str(workdir / "airflow")}.items()]
    (workdir / ENV_FILE).write_text(
        "# written by `dataengine demo`; read by `make up DEMO=1`\n" + "\n".join(lines) + "\n"
    )


def _repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "dags").is_dir():
        raise DataEngineError(
            f"the dags/ folder is not beside the package ({root}); run the demo from a clone"
        )
    return root


def _airflow_env(workdir: Path) -> dict[str, str]:
    root = _repo_root()
    bin_dir = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": str(workdir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


class AirflowRunner:
    """Runs ``airflow`` commands (``dags test`` for each DAG run) in a throwaway AIRFLOW_HOME.

    The commands go through one long-lived ``airflow`` CLI process (:mod:`dataengine.airflow.cli_session`)
    instead of one process each, which saves Airflow's and the task code's start-up (4-5 s of CPU) per
    DAG run; each command still has its own log. :meth:`close` ends that process.
    """

    def __init__(self, workdir: Path, env: dict[str, str], echo: Callable[[str], None]) -> None:
        # The tasks see the demo's settings only, never the caller's other DATAENGINE_* variables.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DATAENGINE_")}
        self.env = {**inherited, **env, **_airflow_env(workdir)}
        self.logs = workdir / "airflow-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._session: subprocess.Popen[str] | None = None
        self._results: IO[str] | None = None

    def _start(self) -> tuple[subprocess.Popen[str], IO[str]]:
        if self._session is None or self._results is None:
            read, write = os.pipe()
            self._session = subprocess.Popen(
                [sys.executable, "-m", "dataengine.airflow.cli_session", str(write)],
                env=self.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(write,), text=True,
            )  # fmt: skip
            os.close(write)
            self._results = os.fdopen(read)
        return self._session, self._results

    def call(self, args: list[str], log_name: str) -> None:
        """Run ``airflow ARGS``, its output in ``airflow-logs/LOG_NAME.log``; raises with the log's tail."""
        log = self.logs / f"{log_name}.log"
        session, results = self._start()
        assert session.stdin is not None
        try:
            session.stdin.write(json.dumps({"args": args, "log": str(log)}) + "\n")
            session.stdin.flush()
            answer = results.readline()
        except BrokenPipeError:
            answer = ""
        if not answer:  # the session died (killed, or out of memory): no later command can run either
            self.close()
            code: object = f"the airflow process ended (exit {session.poll()})"
        else:
            code = json.loads(answer)["code"]
        if code != 0:
            tail = "\n".join(log.read_text().splitlines()[-25:]) if log.exists() else "(no output)"
            raise DataEngineError(f"`airflow {' '.join(args)}` failed ({code}); log {log}:\n{tail}")

    @property
    def pid(self) -> int | None:
        """The airflow process's id, while one runs."""
        return self._session.pid if self._session is not None else None

    def close(self) -> None:
        """End the airflow process, if one was started."""
        session, results, self._session, self._results = self._session, self._results, None, None
        if session is not None:
            with contextlib.suppress(OSError):
                assert session.stdin is not None
                session.stdin.close()
            try:
                session.wait(timeout=60)
            except subprocess.TimeoutExpired:
                session.kill()
                session.wait()
        if results is not None:
            results.close()

    def setup(self) -> None:
        """Migrate Airflow's own database and create the gpu pool."""
        self.call(["db", "migrate"], "db-migrate")
        self.call(["pools", "set", "gpu", "1", "GPU slots for autolabel and training"], "pools")

    def run(self, dag_id: str, label: str, conf: dict[str, Any] | None = None) -> None:
        """One DAG run, in one process; fails loudly with the log's tail."""
        started = time.monotonic()
        args = ["dags", "test", dag_id]
        if conf:
            args += ["--conf", json.dumps(conf)]
        self.call(args, f"{label}-{dag_id}")
        self.echo(f"  airflow dags test {dag_id}: ok ({time.monotonic() - started:.0f} s)")


# Statistics ---------------------------------------------------------------------------------------


def round_stats(
    ctx: Context, *, number: int, since: datetime, seconds: float, rare_class: str = "wheelchair"
) -> RoundStats:
    """What happened in the lineage database since ``since``, and the round's scores on both sets."""
    with ctx.db.session() as session:
        seen = activity_since(session, since)
    stats = RoundStats(
        round=number,
        seconds=seconds,
        videos=seen.videos,
        clips=seen.clips,
        selected=seen.selected,
        autolabelled_boxes=seen.autolabelled_boxes,
        boxes_changed=seen.boxes_changed,
        rare_class=rare_class,
    )
    if seen.model_id is not None:
        stats.model_id = seen.model_id
        stats.promoted = seen.model_status == "promoted"
        if seen.dataset_id:
            stats.dataset = seen.dataset_id
            stats.dataset_clips = seen.dataset_clips
    if stats.model_id:
        _read_scores(ctx, stats)
    return stats


def _read_scores(ctx: Context, stats: RoundStats) -> None:
    """Fill ``stats`` from the metrics.json the promotion wrote beside the round's model (if any yet)."""
    key = f"models/{stats.model_id}/metrics.json"
    if not ctx.store.exists(key):
        return
    doc = ctx.store.read_json(key)
    comparison = CandidateComparison.from_dict(doc)
    decision = doc.get("decision") or {}
    stats.new_map = comparison.regression.candidate.map
    stats.new_map50 = comparison.regression.candidate.map50
    stats.previous_map = decision.get("previous_map")
    stats.held_out = comparison.held_out
    regression = comparison.regression.candidate.score(stats.rare_class)
    stats.regression_rare_ap, stats.regression_rare_support = regression.ap, regression.support
    edge = comparison.edge_case
    if edge is not None:
        stats.edge_case = edge.label
        stats.new_edge_map = edge.candidate.map
        stats.previous_edge_map = edge.promoted.map if edge.promoted else None
        score = edge.candidate.score(stats.rare_class)
        stats.rare_ap, stats.rare_support = score.ap, score.support
        if edge.promoted is not None:
            stats.previous_rare_ap = edge.promoted.score(stats.rare_class).ap


def score_on_last_edge_set(ctx: Context, rounds: list[RoundStats]) -> None:
    """Score every round's model on the last round's edge-case set: one yardstick for the whole demo.

    The edge-case set grows each round, so each round's own figures come from a different set; on the
    last one, the bootstrap and every later model are measured on the same frames.
    """
    from dataengine.training.evaluation import EDGE_CASES, evaluate

    last = next((r for r in reversed(rounds) if r.edge_case and r.dataset), None)
    if last is None:
        return
    for stats in rounds:
        if not stats.model_id:
            continue
        scores = evaluate(ctx, model_id=stats.model_id, dataset=last.dataset, split=EDGE_CASES)
        rare = scores.score(stats.rare_class)
        stats.final_edge_case = last.edge_case
        stats.final_rare_ap, stats.final_rare_support = rare.ap, rare.support


# The demo ----------------------------------------------------------------------------------------


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the bootstrap and ``options.rounds`` rounds; returns the per-round numbers."""
    from dataengine.synthetic import write_landing
    from dataengine.synthetic.seed import label_seed_from_ground_truth

    wall = time.monotonic()
    workdir = _prepare_workdir(options.workdir)
    env = _engine_env(options, workdir)
    _write_env_file(workdir, env)
    # Explicit values win over the caller's DATAENGINE_* environment, which the demo leaves untouched.
    settings: Settings = load_settings(
        database_url=env["DATAENGINE_DATABASE_URL"],
        storage_url=env["DATAENGINE_STORAGE_URL"],
        review_platform="simulated",
        **options.settings,
    )
    ctx = Context.create(settings, run_id="demo/bootstrap", actor="demo")
    runner = AirflowRunner(workdir, env, echo) if options.through == "airflow" else None

    def run(dag_id: str, label: str) -> None:
        if runner is not None:
            runner.run(dag_id, label)
        else:
            done = run_dag(ctx.with_run(f"demo/{label}/{dag_id}"), dag_id)
            echo(f"  {dag_id}: ok (in-process: {', '.join(done) or 'nothing to do'})")

    results = []
    try:
        if runner is not None:
            echo("setting up Airflow (metadata database, gpu pool)")
            runner.setup()
        for number in range(options.rounds + 1):
            since, started = datetime.now(UTC), time.monotonic()
            day = (date(2026, 11, 22) + timedelta(days=number)).isoformat()
            n_videos = options.seed_videos if number == 0 else options.videos_per_round
            echo(f"round {number}: {n_videos} new synthetic videos in landing/ ({day})")
            write_landing(
                ctx.store,
                n_videos=n_videos,
                seed=options.seed * 1000 + number,
                seconds=options.video_seconds,
                fps=options.fps,
                start_day=day,
                prefix=settings.landing_prefix,
            )
            dags = ("ingest_daily", "one_click_train") if number == 0 else _DAG_ORDER
            for dag_id in dags:
                if number == 0 and dag_id == "one_click_train":
                    boxes = label_seed_from_ground_truth(ctx)
                    echo(f"  seed clips labelled from synthetic ground truth: {boxes} boxes")
                run(dag_id, f"round{number}")
            results.append(
                round_stats(
                    ctx,
                    number=number,
                    since=since,
                    seconds=time.monotonic() - started,
                    rare_class=options.rare_class,
                )
            )
        echo(f"scoring every round's model on the last edge-case set ({options.rare_class} AP)")
        score_on_last_edge_set(ctx, results)
    finally:
        if runner is not None:
            runner.close()
        ctx.close()
    return DemoResult(rounds=results, wall_seconds=time.monotonic() - wall, workdir=str(workdir))
