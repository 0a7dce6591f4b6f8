"""The fault suite's tools: an engine on disk run through the CLI in child processes, its final state
(lineage rows and objects) in a form two runs can be compared by, snapshots, a TCP proxy to cut the
database, and the secrets no output may hold."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import av
import numpy as np
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from dataengine.lineage.models import Base

ADMIN_URL = os.environ.get(
    "DATAENGINE_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@localhost:5432/postgres"
)
#: A password the PostgreSQL URL carries (the test server trusts local connections, so any password
#: logs in); no output, log or stored file may show it.
DB_PASSWORD = "pw-Fault-7a1c9e"
S3_KEY = "AKIAFAULTSUITE7A1C9E"
S3_SECRET = "s3-secret-Fault-7a1c9e0b"
SECRETS = (DB_PASSWORD, S3_KEY, S3_SECRET)

#: The fast settings of every run: 1-second clips, 2 sampled frames a second, one tiny training epoch.
FAST = {
    "DATAENGINE_CLIP_SECONDS": "1",
    "DATAENGINE_SAMPLE_FPS": "2",
    "DATAENGINE_TRAIN_EPOCHS": "1",
    "DATAENGINE_TRAIN_NPROC": "1",
    "DATAENGINE_REVIEW_RETRY_WAIT": "0",
    # A bug must show its traceback, so that the suite sees it (the CLI otherwise prints one line).
    "DATAENGINE_TRACEBACK": "1",
}

#: The loop's stages in order, each as the CLI command that runs it.
STAGES: dict[str, list[str]] = {
    "ingest": ["ingest"],
    "bootstrap": ["model", "import", "--arch", "opencv_hog"],
    "triggers": ["triggers", "--budget-count", "3"],
    "autolabel": ["autolabel"],
    "export": ["review", "export", "--platform", "simulated"],
    "review": ["review", "import", "--platform", "simulated"],
    "dataset": ["dataset", "build"],
    "train": ["train"],
}


# Outputs ----------------------------------------------------------------------------------------


@dataclass
class Outputs:
    """Everything the suite's child processes printed, scanned for secrets at the end."""

    texts: list[str] = field(default_factory=list)

    def check(self, args: list[str], result: subprocess.CompletedProcess[str]) -> str:
        out = result.stdout + result.stderr
        self.texts.append(out)
        assert "Traceback" not in out, f"dataengine {' '.join(args)} printed a traceback:\n{out}"
        for secret in SECRETS:
            assert secret not in out, f"dataengine {' '.join(args)} printed a secret:\n{out}"
        return out


OUTPUTS = Outputs()


# Child processes ------------------------------------------------------------------------------------


class Child:
    """One CLI run forked by the zygote: its pid, and its exit status when it ends."""

    def __init__(self, connection: socket.socket, out: Path) -> None:
        self.connection = connection
        self.reader = connection.makefile("rb")
        self.out = out
        self.pid: int = json.loads(self.reader.readline())["pid"]
        self.returncode: int | None = None

    def wait(self, timeout: float = 300) -> int:
        if self.returncode is None:
            self.connection.settimeout(timeout)
            line = self.reader.readline()
            if not line:
                raise RuntimeError(f"the zygote lost child {self.pid}")
            self.returncode = int(json.loads(line)["status"])
            self.reader.close()
            self.connection.close()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            self.connection.setblocking(False)
            try:
                peeked = self.connection.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return None
            finally:
                self.connection.setblocking(True)
            if not peeked:
                raise RuntimeError(f"the zygote lost child {self.pid}")
            return self.wait()
        return self.returncode

    def output(self) -> str:
        return "".join(
            self.out.with_suffix(s).read_text(errors="replace")
            for s in (".out", ".err")
            if self.out.with_suffix(s).exists()
        )


class Zygote:
    """``zygote.py`` started on first use (one per test process), forking every CLI run of the suite."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.folder: Path | None = None
        self.runs = 0

    def _ensure(self) -> Path:
        if self.proc is None or self.proc.poll() is not None:
            import tempfile

            self.folder = Path(tempfile.mkdtemp(prefix="faults-zygote-"))
            socket_path = self.folder / "zygote.sock"
            self.proc = subprocess.Popen(
                [sys.executable, str(ZYGOTE_SCRIPT), str(socket_path)], stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            assert self.proc.stdout.readline().strip() == "ready", "the zygote did not start"
        assert self.folder is not None
        return self.folder

    def start(self, args: list[str], *, env: dict[str, str], cwd: Path) -> Child:
        folder = self._ensure()
        self.runs += 1
        out = folder / f"run-{self.runs}"
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(folder / "zygote.sock"))
        request = {"args": args, "env": env, "cwd": str(cwd), "stdout": str(out.with_suffix(".out")),
                   "stderr": str(out.with_suffix(".err"))}  # fmt: skip
        connection.sendall(json.dumps(request).encode() + b"\n")
        return Child(connection, out)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
ZYGOTE = Zygote()


# The engine ---------------------------------------------------------------------------------------


@dataclass
class Engine:
    """A store folder (or S3 prefix) and a lineage database, driven through the CLI in child processes."""

    folder: Path
    database_url: str
    storage_url: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {
            **FAST,
            "DATAENGINE_DATABASE_URL": self.database_url,
            "DATAENGINE_STORAGE_URL": self.storage_url,
            **self.extra_env,
        }

    def start(self, args: list[str], *, plan: str = "", fault_dir: Path | None = None) -> Child:
        """``dataengine ARGS`` started in a child process with the fault ``plan`` armed in it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAENGINE_")}
        env.update(self.env)
        env["FAULT_PLAN"] = plan
        if fault_dir is not None:
            env["FAULT_DIR"] = str(fault_dir)
        return ZYGOTE.start(args, env=env, cwd=self.folder)

    def finish(self, child: Child, args: list[str], timeout: float = 300) -> tuple[int, str]:
        code = child.wait(timeout)
        out = child.output()
        return code, OUTPUTS.check(args, subprocess.CompletedProcess(args, code, out, ""))

    def run(self, args: list[str], *, plan: str = "") -> tuple[int, str]:
        """``dataengine ARGS`` run to its end; its exit code and output."""
        return self.finish(self.start(args, plan=plan), args)

    def ok(self, args: list[str]) -> str:
        code, out = self.run(args)
        assert code == 0, f"dataengine {' '.join(args)} exited {code}:\n{out}"
        return out

    def killed(self, args: list[str], plan: str) -> bool:
        """Run with a ``kill`` plan; whether the kill fired (a run that ends before the point does not)."""
        code, out = self.run(args, plan=plan)
        if code == -signal.SIGKILL:
            return True
        assert code == 0, f"dataengine {' '.join(args)} ({plan}) exited {code}:\n{out}"
        return False

    # State --------------------------------------------------------------------------------------

    @property
    def store_root(self) -> Path:
        return Path(self.storage_url.removeprefix("file://"))

    def objects(self) -> dict[str, bytes]:
        root = self.store_root
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return {
                    table.name: [dict(row._mapping) for row in connection.execute(select(table))]
                    for table in Base.metadata.sorted_tables
                }
        finally:
            engine.dispose()

    def state(self, objects: Mapping[str, bytes] | None = None) -> State:
        return canonical(self.rows(), self.objects() if objects is None else objects, self.storage_url)


# Canonical state ----------------------------------------------------------------------------------

#: Columns that say when or by which run something happened: two equal runs differ there.
VOLATILE_COLUMNS = {"created_at", "updated_at", "at", "exported_at", "imported_at", "promoted_at", "run_id"}
#: Keys inside JSON (rows and objects) that hold times, durations, hosts or run ids.
VOLATILE_KEY = re.compile(
    r"(^|_)(at|seconds|time|timestamp|run_id|duration|wall|elapsed|host|pid|fingerprint)$"
    # A review platform's payload carries the time it was submitted.
    r"|^payload_sha256$"
    # A training run's last loss: CPU training is not bit-reproducible (see _torch_signature), so a
    # model trained again can end a few thousandths away; its evaluation is compared.
    r"|^final_loss$"
)


@dataclass
class State:
    rows: dict[str, list[str]]
    objects: dict[str, str]

    def diff(self, other: State, *, repeated_history: bool = False) -> str:
        """What differs from ``other``, empty when nothing does. With ``repeated_history`` the history
        (``clip_events``) is compared as a set: two runs that both did a piece of work may both say so."""
        lines = []
        for table in sorted(set(self.rows) | set(other.rows)):
            mine, theirs = self.rows.get(table, []), other.rows.get(table, [])
            if repeated_history and table == "clip_events":
                mine, theirs = sorted(set(mine)), sorted(set(theirs))
            if mine != theirs:
                lines.append(f"table {table}:")
                lines += [f"  - {r}" for r in sorted(set(theirs) - set(mine))]
                lines += [f"  + {r}" for r in sorted(set(mine) - set(theirs))]
                if set(mine) == set(theirs):
                    lines.append(f"  counts differ: {len(mine)} rows here, {len(theirs)} in the clean run")
        for key in sorted(set(self.objects) | set(other.objects)):
            if self.objects.get(key) != other.objects.get(key):
                lines.append(f"object {key}: {self.objects.get(key)} here, {other.objects.get(key)} clean")
        return "\n".join(lines)


def _drop_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items() if not VOLATILE_KEY.search(str(k))}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def video_signature(data: bytes) -> str:
    """A ``clip.mp4`` by its decoded frames (times and sizes): libx264 is not byte-reproducible."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return repr([(f.pts, f.width, f.height) for f in container.decode(video=0)])


def _npz_signature(data: bytes, plain: Callable[[str], str]) -> str:
    """An ``.npz`` by its arrays (the zip around them carries the time it was written), the store's URL
    and cited hashes replaced; the index's own checksums of the manifest are left out, as they follow
    from the URLs."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return repr({
            name: hashlib.sha256(plain(arrays[name].tobytes().decode("latin-1")).encode()).hexdigest()
            for name in sorted(arrays.files)
            # The index's checksums of the manifest follow from the URLs in it, and the URIs' offsets
            # from their lengths: the store's URL is in both (``uris_data`` is compared, URL replaced).
            # Each array's block checksums (``NAME__crc32``, format 3) follow from its raw bytes, URL
            # included; the arrays themselves are compared.
            if not VOLATILE_KEY.search(name)
            and name not in ("sha256", "manifest_sha256", "uris_offsets")
            and not name.endswith("__crc32")
        })  # fmt: skip


def _torch_signature(data: bytes) -> str:
    """A checkpoint by its tensors' names, shapes and dtypes and its other values: training on the
    CPU is not bit-reproducible (thread scheduling changes the order of float sums)."""
    import torch

    def shape(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return (tuple(value.shape), str(value.dtype))
        if isinstance(value, dict):
            return {str(k): shape(v) for k, v in value.items() if not VOLATILE_KEY.search(str(k))}
        if isinstance(value, (list, tuple)):
            return [shape(v) for v in value]
        return value if isinstance(value, (str, int, bool)) or value is None else type(value).__name__

    return repr(shape(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)))


def _event_days_check(days: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """ "matches clip_events", or what ``clip_event_days`` counts that the events do not."""
    stored = Counter({(r["day"], r["stage"], r["status"], r["run_key"]): r["events"] for r in days})
    counted = Counter(
        (e["at"].astimezone(UTC).date(), e["stage"], e["status"], re.sub(r"\[\d+\]$", "", e["run_id"] or ""))
        for e in events
    )
    if stored == counted:
        return "matches clip_events"
    extra, missing = sorted((stored - counted).items()), sorted((counted - stored).items())
    return f"differs from clip_events: counted in excess {extra}, not counted {missing}"


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if isinstance(value, (int, str)) else None
    except ValueError:
        return None


def _review_totals_check(rows: Mapping[str, list[dict[str, Any]]]) -> str:
    """ "matches the reviews", or how the models page's review totals differ from counting the reviews
    in the rows as the page's former query did (lineage.review_totals.review_rows)."""
    versions = {(v["clip_id"], v["version"]): v for v in rows.get("annotation_versions", [])}
    with_review = {v["clip_id"] for v in versions.values() if v["source"] == "review"}
    counted: dict[tuple[str, str], list[int]] = {}
    for event in rows.get("clip_events", []):
        if event["stage"] != "reviewed" or event["status"] != "ok" or event["clip_id"] not in with_review:
            continue
        details = event["details"] or {}
        review = versions.get((event["clip_id"], _as_int(details.get("version"))))
        parent = review and versions.get((event["clip_id"], review["parent_version"]))
        if parent is None:
            continue
        for model_id in (parent["producer"] or {}).get("models", []):
            entry = counted.setdefault((event["clip_id"], str(model_id)), [0, 0, 0])
            entry[0] += 1
            entry[1] += _as_int(details.get("boxes_changed")) or 0
            entry[2] += parent["n_boxes"]
    keys = ("reviews", "boxes_changed", "boxes_proposed")
    per_clip = {(r["clip_id"], r["model_id"]): [r[k] for k in keys] for r in rows["clip_review_totals"]}
    per_model = {r["model_id"]: [r[k] for k in keys] for r in rows.get("model_review_totals", [])}
    summed: dict[str, list[int]] = {}
    for (_, model_id), values in counted.items():
        summed[model_id] = [a + b for a, b in zip(summed.get(model_id, [0, 0, 0]), values, strict=True)]
    if per_clip == counted and per_model == summed:
        return "matches the reviews"
    return f"differs from the reviews: per clip {per_clip} != {counted}, per model {per_model} != {summed}"


def canonical(rows: dict[str, list[dict[str, Any]]], objects: Mapping[str, bytes], store_url: str) -> State:
    """Rows without their times, run ids and serial ids; objects by sha256 (JSON without times,
    ``clip.mp4`` by frames, ``.npz`` by arrays). The store's URL is replaced, and so is every object's
    sha256 where a row or another object cites it (by the key it names), so that two engines compare
    equal although a JSON object carries the time it was written."""
    cited = {
        hashlib.sha256(data).hexdigest(): f"sha256({key})"
        for key, data in sorted(objects.items(), reverse=True)
    }
    hexes = re.compile(r"[0-9a-f]{64}")

    def plain(text: str) -> str:
        return hexes.sub(lambda m: cited.get(m.group(0), m.group(0)), text.replace(store_url, "STORE"))

    out_rows: dict[str, list[str]] = {}
    rows = dict(rows)
    if "clip_event_days" in rows:
        # Counts of clip_events per run and day: two runs that split the work split them differently,
        # so what must hold is that they count exactly the events there are.
        out_rows["clip_event_days"] = [
            _event_days_check(rows.pop("clip_event_days"), rows.get("clip_events", []))
        ]
    if "clip_review_totals" in rows:
        # The models page's review totals: a function of the reviews and versions there are.
        out_rows["review_totals"] = [_review_totals_check(rows)]
        rows.pop("clip_review_totals")
        rows.pop("model_review_totals", None)
    for table, found in rows.items():
        serial = table in {
            "clip_events",
            "trigger_scores",
            "annotation_versions",
            "review_tasks",
            "quarantine",
        }
        kept = []
        for row in found:
            clean = {
                k: _drop_volatile(v)
                for k, v in row.items()
                if k not in VOLATILE_COLUMNS and not (serial and k == "id")
            }
            kept.append(plain(json.dumps(clean, sort_keys=True, default=str)))
        out_rows[table] = sorted(kept)
    out_objects: dict[str, str] = {}
    for key, data in objects.items():
        if key.endswith(".mp4") and key.startswith("clips/"):
            out_objects[key] = video_signature(data)
            continue
        if key.endswith(".npz"):
            out_objects[key] = _npz_signature(data, plain)
            continue
        if key.endswith(".pt"):
            out_objects[key] = _torch_signature(data)
            continue
        if key.endswith((".json", ".jsonl")):
            try:
                text = data.decode()
                values = (
                    [json.loads(line) for line in text.splitlines()]
                    if key.endswith(".jsonl")
                    else [json.loads(text)]
                )
                data = plain(json.dumps(_drop_volatile(values), sort_keys=True)).encode()
            except ValueError:
                pass
        out_objects[key] = hashlib.sha256(data).hexdigest()
    return State(out_rows, out_objects)


# Snapshots ------------------------------------------------------------------------------------------


def postgres_missing() -> str | None:
    """None when the test PostgreSQL server answers, else why not."""
    url = make_url(ADMIN_URL)
    try:
        with socket.create_connection((url.host or "localhost", url.port or 5432), timeout=2):
            return None
    except OSError as exc:
        return f"no PostgreSQL at {url.host}:{url.port}: {exc}"


def postgres_url(name: str, *, host: str = "127.0.0.1", port: int = 5432) -> str:
    base = make_url(ADMIN_URL)
    return base.set(database=name, host=host, port=port, password=DB_PASSWORD).render_as_string(
        hide_password=False
    )


def _admin(statement: str) -> None:
    engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def create_database(name: str, *, template: str | None = None) -> None:
    suffix = f' TEMPLATE "{template}"' if template else ""
    _admin(f'CREATE DATABASE "{name}"{suffix}')


class Dropper:
    """Drops PostgreSQL databases on a thread of its own, so that tests need not wait for it."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._thread: threading.Thread | None = None

    def drop(self, names: list[str]) -> None:
        """Drop ``names`` soon (and empty the list)."""
        if not names:
            return
        self.wait()
        batch, names[:] = list(names), []
        self._thread = threading.Thread(target=drop_databases, args=(batch,), daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def drop_databases(names: list[str]) -> None:
    engine = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for name in names:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@dataclass
class Snapshot:
    """An engine's store folder and database, frozen after a stage."""

    folder: Path
    backend: str
    database: str  # a file for SQLite, a template database name for PostgreSQL
    state: State

    def models(self) -> list[str]:
        """The ids of the models whose checkpoint the snapshot holds."""
        return [p.parent.name for p in (self.folder / "store" / "models").glob("*/model.pt")]

    def restore(self, folder: Path, store: Path, created: list[str]) -> Engine:
        """A new engine holding this snapshot: its database (a file in ``folder``, or a PostgreSQL
        database recorded in ``created``) and its objects, copied back to ``store``. The store is where
        the snapshot was taken, as lineage rows name objects by URI; one test at a time uses it."""
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(self.folder / "store", store)
        if self.backend == "sqlite":
            shutil.copy(self.database, folder / "lineage.db")
            url = f"sqlite:///{folder / 'lineage.db'}"
        else:
            name = f"faults_{uuid.uuid4().hex[:12]}"
            create_database(name, template=self.database)
            created.append(name)
            url = postgres_url(name)
        return Engine(folder, url, f"file://{store}")


def snapshot(engine: Engine, folder: Path, backend: str, created: list[str]) -> Snapshot:
    shutil.copytree(engine.store_root, folder / "store")
    state = engine.state()
    if backend == "sqlite":
        db_file = Path(make_url(engine.database_url).database or "")
        shutil.copy(db_file, folder / "lineage.db")
        return Snapshot(folder, backend, str(folder / "lineage.db"), state)
    name = f"faults_snap_{uuid.uuid4().hex[:12]}"
    source = make_url(engine.database_url).database
    _admin(  # a template must have no other session
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{source}'"
    )
    create_database(name, template=source)
    created.append(name)
    return Snapshot(folder, backend, name, state)


# A TCP proxy the test can cut -----------------------------------------------------------------------


class Proxy:
    """Forwards 127.0.0.1:port to PostgreSQL; :meth:`cut` closes every connection and refuses new ones
    until :meth:`restore`."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.up = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.up = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.server.close()


# The clean reference ----------------------------------------------------------------------------------


@dataclass
class Reference:
    """A clean run: each stage's snapshot before it, its state after it, and its writes and commits."""

    backend: str
    store: Path  # the clean run's store, where every test's engine keeps its objects
    before: dict[str, Snapshot] = field(default_factory=dict)
    after: dict[str, State] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # the clean run's and the snapshots' databases
    _current: list[str] = field(default_factory=list)  # the running test's database
    _dropper: Dropper = field(default_factory=lambda: Dropper())

    def engine(self, stage: str, folder: Path) -> Engine:
        """A new engine holding what the clean run held just before ``stage``. The previous test's
        PostgreSQL database is dropped meanwhile, in the background (a drop waits for a checkpoint)."""
        if self.backend == "postgres":
            self._dropper.drop(self._current)
        engine = self.before[stage].restore(folder, self.store, self._current)
        return engine

    def close(self) -> None:
        """Drop every PostgreSQL database the reference and its tests made."""
        self._dropper.drop(self._current)
        self._dropper.drop(self.created)
        self._dropper.wait()

    def kill_points(self, stage: str) -> list[str]:
        """Where to kill a run of ``stage``, in order: after an object written mid-run (its row not yet
        committed), just before the last commit (all objects written, the rows not), just after the first
        commit. A later point runs on what the earlier kills left."""
        writes, commits = self.counts[stage].get("write", 0), self.counts[stage].get("commit", 0)
        points = []
        if writes:
            points.append(f"kill:write:{math.ceil(writes / 2)}")
        if commits:
            points.append(f"kill:commit:{commits}")
        if commits > 1:
            points.append("kill:committed:1")
        return points

    def cut_point(self, stage: str) -> str:
        """Where the database is cut: mid-run, after half the objects are written, or at the last commit."""
        writes, commits = self.counts[stage].get("write", 0), self.counts[stage].get("commit", 0)
        return f"pause:write:{math.ceil(writes / 2)}" if writes else f"pause:commit:{commits}"


def new_engine(folder: Path, backend: str, created: list[str], store: Path) -> Engine:
    folder.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        return Engine(folder, f"sqlite:///{folder / 'lineage.db'}", f"file://{store}")
    name = f"faults_{uuid.uuid4().hex[:12]}"
    create_database(name)
    created.append(name)
    return Engine(folder, postgres_url(name), f"file://{store}")


# S3 that fails one PUT in N ------------------------------------------------------------------------

_S3_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FlakyS3:
    """moto's S3 on 127.0.0.1 behind a WSGI layer that answers every ``every``-th object PUT with
    500 InternalError, before moto sees it (what S3 does under load: the PUT is not stored)."""

    def __init__(self, every: int) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.every = every
        self.puts = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()
        moto = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            path = environ.get("PATH_INFO", "")
            if environ["REQUEST_METHOD"] == "PUT" and path.strip("/").count("/") >= 1:
                with self._lock:
                    self.puts += 1
                    fail = self.puts % self.every == 0
                if fail:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    environ["wsgi.input"].read(length)
                    self.failed.append(path)
                    start_response("500 Internal Server Error", [("Content-Type", "application/xml")])
                    return [_S3_ERROR]
            return moto(environ, start_response)

        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET, region_name="us-east-1",
        )  # fmt: skip

    def options(self) -> str:
        """``DATAENGINE_STORAGE_OPTIONS`` for a store on this server."""
        return json.dumps(
            {
                "key": S3_KEY,
                "secret": S3_SECRET,
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            }
        )

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix) + 1 :]] = body
        return found

    def close(self) -> None:
        self.server.shutdown()
