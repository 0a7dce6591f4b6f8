"""The fault scenarios, which ``test_faults_sqlite.py`` and ``test_faults_postgres.py`` run on their database.

Each scenario starts from the clean run's snapshot just before a stage, injects faults into real
``dataengine`` child processes, runs the stage once more, and returns how the final state (lineage rows
and every object, :func:`faultkit.canonical`) differs from the clean run's after that stage: the tests
assert it is empty. What must hold along the way (a kill fired, a run failed cleanly) is asserted here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from faultkit import OUTPUTS, SECRETS, STAGES, Engine, FlakyS3, Proxy, Reference, State, postgres_url

#: The stages that write, as the CLI runs them (``bootstrap`` is ``model import``, which promotes;
#: ``train`` trains, evaluates and promotes).
WRITING = ["ingest", "bootstrap", "triggers", "autolabel", "export", "review", "dataset", "train"]


def difference(state: State, clean: State, what: str, *, repeated_history: bool = False) -> str:
    """How ``state`` differs from the clean run's, named by ``what``; empty when they are the same."""
    found = state.diff(clean, repeated_history=repeated_history)
    return f"{what}: the final state differs from a clean run's:\n{found}" if found else ""


def killed_runs_then_a_rerun(reference: Reference, stage: str, tmp_path: Path) -> str:
    """SIGKILL at each of the stage's kill points in turn (each run starting from what the kills before
    it left), then one more run: the state equals a clean run's."""
    engine = reference.engine(stage, tmp_path)
    args = STAGES[stage]
    points = reference.kill_points(stage)
    fired = [point for point in points if engine.killed(args, point)]
    assert fired[:1] == points[:1], f"{stage}: the first kill ({points[0]}) never fired"
    engine.ok(args)
    return difference(engine.state(), reference.after[stage], f"{stage} killed at {', '.join(fired)}")


def two_concurrent_runs(reference: Reference, stage: str, tmp_path: Path) -> str:
    """Two runs of the stage started together on the same inputs: both exit 0, no traceback, and the
    state equals one clean run's."""
    engine = reference.engine(stage, tmp_path)
    args = STAGES[stage]
    procs = [engine.start(args) for _ in range(2)]
    results = [engine.finish(proc, args) for proc in procs]
    for code, out in results:
        assert code == 0, f"{stage}: a concurrent run exited {code}:\n{out}"
    # Both runs may do a piece of work and record it: the history says so twice, nothing else differs.
    return difference(
        engine.state(), reference.after[stage], f"two concurrent runs of {stage}", repeated_history=True
    )


def cut_database_mid_run(reference: Reference, stage: str, tmp_path: Path) -> str:
    """PostgreSQL goes away mid-run (the proxy between them closes every connection), the run fails
    with a clear error, the database comes back, a rerun finishes: the state equals a clean run's."""
    engine = reference.engine(stage, tmp_path)
    proxy = Proxy()
    try:
        from sqlalchemy.engine import make_url

        engine.database_url = postgres_url(make_url(engine.database_url).database or "", port=proxy.port)
        args = STAGES[stage]
        signals = tmp_path / "signals"
        signals.mkdir()
        proc = engine.start(args, plan=reference.cut_point(stage), fault_dir=signals)
        deadline = time.monotonic() + 240
        while not (signals / "reached").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (signals / "reached").exists(), f"{stage} never reached {reference.cut_point(stage)}"
        proxy.cut()
        (signals / "go").touch()
        code, out = engine.finish(proc, args)
        assert code != 0, f"{stage} went on without its database:\n{out}"
        assert re.search(r"^error: .*lineage database .*(unavailable|cannot reach)", out, re.M), out
        proxy.restore()
        engine.ok(args)
        return difference(engine.state(), reference.after[stage], f"{stage} with its database cut mid-run")
    finally:
        proxy.close()


def secrets_found(reference: Reference) -> list[str]:
    """Where a secret showed up: in the output of the suite's child processes (run at DEBUG level), in a
    stored file of the clean run, or in a lineage row after any stage. Empty when nowhere."""
    assert OUTPUTS.texts, "no child process output was collected"
    found = [f"output holds {s}" for s in sorted({s for text in OUTPUTS.texts for s in SECRETS if s in text})]
    stores = [snap.folder / "store" for snap in reference.before.values()] + [reference.store]
    for path in (p for store in stores for p in store.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path} holds {s}" for s in SECRETS if s.encode() in data]
    for stage, state in reference.after.items():
        leaked = sorted({s for rows in state.rows.values() for row in rows for s in SECRETS if s in row})
        found += [f"a lineage row after {stage} holds {s}" for s in leaked]
    return found


#: The stages run on a flaky S3 store: every one that writes objects, training aside (its torchrun
#: workers write through the same store code, and a training run is the suite's most expensive step).
S3_STAGES = ["ingest", "bootstrap", "triggers", "autolabel", "export", "review", "dataset"]


def flaky_s3_loop(reference: Reference, tmp_path: Path) -> str:
    """The loop on an S3 store that fails one object PUT in 5: every stage succeeds (the PUT is
    retried), and the objects in the bucket, none partial, are a clean run's."""
    s3 = FlakyS3(every=5)
    try:
        s3.client().create_bucket(Bucket="faults")
        engine = Engine(
            tmp_path, f"sqlite:///{tmp_path / 'lineage.db'}", "s3://faults/data",
            extra_env={"DATAENGINE_STORAGE_OPTIONS": s3.options()},
        )  # fmt: skip
        engine.ok(["init"])
        engine.ok(["synthetic", "--videos", "2", "--seconds", "2", "--seed", "7"])
        for stage in S3_STAGES:
            engine.ok(STAGES[stage])
        assert len(s3.failed) >= 5, f"only {len(s3.failed)} of {s3.puts} PUTs failed"
        objects = s3.objects("faults", "data")
        assert not [key for key, data in objects.items() for secret in SECRETS if secret.encode() in data]
        state = engine.state(objects)
        return difference(state, reference.after[S3_STAGES[-1]], "the loop on S3 failing one PUT in 5")
    finally:
        s3.close()


def training_processes(store: Path) -> list[int]:
    """Pids of torchrun launchers and training ranks working on ``store``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if "dataengine.training.ddp" in cmdline and str(store) in cmdline:
            found.append(int(proc.name))
    return found


def killed_mid_training(reference: Reference, tmp_path: Path) -> str:
    """``train`` killed while its torchrun job trains: the job ends with it, before it wrote a model (no
    rank goes on writing beside a rerun), and the rerun trains again: the state equals a clean run's."""
    engine = reference.engine("train", tmp_path)
    args = STAGES["train"]
    assert engine.killed(args, "kill:spawn:1"), "train ended before its torchrun job had run for long"
    running = training_processes(reference.store)
    assert running, "the torchrun job was not running when train was killed"
    deadline = time.monotonic() + 120
    while (left := training_processes(reference.store)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"the killed train left its training processes {left} running"
    models = sorted(p.parent.name for p in (reference.store / "models").glob("*/model.pt"))
    assert models == sorted(reference.before["train"].models()), f"an orphaned job finished: {models}"
    engine.ok(args)
    return difference(engine.state(), reference.after["train"], "train killed while its torchrun job ran")
