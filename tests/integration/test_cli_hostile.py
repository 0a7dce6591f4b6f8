"""The CLI over a catalogue of hostile input: every case ends in a clear message and the right exit code.

Each case runs ``dataengine`` in a child process, as a user would. A ``Traceback`` (or the one-line
report of an unexpected error) anywhere in the output fails the test. Exit codes as the README says:
2 for bad usage (an invalid option or setting), 1 when nothing of what was asked could be done.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_process import run_cli
from dataengine.synthetic import SyntheticScene, render_video

STORE, DATABASE = "DATAENGINE_STORAGE_URL", "DATAENGINE_DATABASE_URL"
PREFIX = "DATAENGINE_"
IMPORT = ["review", "import", "--platform", "encord", "--file"]


@dataclass(frozen=True)
class Case:
    """``dataengine ARGS`` with ``env`` over the engine's own; the exit code and a phrase it must print."""

    name: str
    args: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    obey_permissions: bool = False


def _files(root: Path) -> dict[str, Path]:
    """Hostile files on disk, by name."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "corrupt_db": root / "corrupt.db",
        "a_file": root / "a-file",
        "bad_toml": root / "bad.toml",
        "not_json": root / "not-json.json",
        "object_json": root / "number.json",
        "folder": root / "folder.mp4",
        "broken_link": root / "link.mp4",
        "readonly_store": root / "readonly-store",
        "good": root / "good.mp4",
    }
    files["corrupt_db"].write_bytes(b"this is not a SQLite database\n" * 200)
    files["a_file"].write_text("a file where a folder should be\n")
    files["bad_toml"].write_text("clip_seconds = [unclosed\n")
    files["not_json"].write_text("{nope")
    files["object_json"].write_text("17")
    files["folder"].mkdir()
    files["broken_link"].symlink_to(root / "gone.mp4")
    files["readonly_store"].mkdir()
    files["readonly_store"].chmod(0o555)
    render_video(files["good"], scene=SyntheticScene(seed=61, n_frames=10, fps=10.0))
    return files


def _catalogue(f: dict[str, Path]) -> list[Case]:
    usage = [
        Case("unknown platform", ["review", "export", "--platform", "nosuch"], 2, "unknown review platform"),
        Case("unknown platform (import)", ["review", "import", "--platform", "nosuch"], 2, "'nosuch'"),
        Case("budget above 1", ["triggers", "--budget", "5"], 2, "--budget"),
        Case("negative budget count", ["triggers", "--budget-count", "-3"], 2, "--budget-count"),
        Case("clip length 0", ["ingest", "--clip-seconds", "0"], 2, "0 is not above 0"),
        Case("clip length text", ["ingest", "--clip-seconds", "abc"], 2, "'abc' is not a number"),
        Case("negative sampling", ["ingest", "--sample-fps", "-1"], 2, "--sample-fps"),
        Case("no processes", ["train", "--nproc", "0"], 2, "--nproc"),
        Case("no epochs", ["train", "--epochs", "0"], 2, "--epochs"),
        Case("unknown stage", ["clips", "list", "--stage", "nosuch"], 2, "no stage 'nosuch'"),
        Case("unknown demo driver", ["demo", "--through", "nosuch"], 2, "not one of airflow, python"),
        Case("not a date", ["review", "report", "--since", "yesterday-ish"], 2, "--since"),
        Case("unknown command", ["nosuch"], 2, "No such command"),
        Case("S3 without bucket", ["status"], 2, "names no bucket", {STORE: "s3://"}),
        Case("store without scheme", ["status"], 2, "needs a scheme", {STORE: "data"}),
        Case("unknown store", ["status"], 2, "Protocol not known", {STORE: "nosuch://x"}),
        Case("unknown database", ["status"], 2, "cannot use database URL", {DATABASE: "nosuch://"}),
        Case("database not a URL", ["status"], 2, "is not a database URL", {DATABASE: "::"}),
        Case("setting not a number", ["status"], 2, "clip_seconds", {f"{PREFIX}CLIP_SECONDS": "abc"}),
        Case("unknown platform setting", ["status"], 2, "review_platform", {f"{PREFIX}REVIEW_PLATFORM": "x"}),
        Case("missing config", ["status"], 2, "not a file", {"DATAENGINE_CONFIG": "/nonexistent.toml"}),
        Case("broken config", ["status"], 2, str(f["bad_toml"]), {"DATAENGINE_CONFIG": str(f["bad_toml"])}),
    ]  # fmt: skip
    state = [
        Case("corrupt SQLite", ["status"], 1, "is not a usable SQLite database",
             {DATABASE: f"sqlite:///{f['corrupt_db']}"}),
        Case("SQLite under a file", ["status"], 1, "cannot create the folder",
             {DATABASE: f"sqlite:///{f['a_file']}/sub/lineage.db"}),
        Case("SQLite is a folder", ["status"], 1, "is a directory",
             {DATABASE: f"sqlite:///{f['folder']}"}),
        Case("PostgreSQL not there", ["status"], 1, "cannot reach the lineage database",
             {DATABASE: "postgresql+psycopg2://app:hunter2@127.0.0.1:1/lineage"}),
        Case("store under a file", ["status"], 1, "cannot create the store folder",
             {STORE: f"file://{f['a_file']}/store"}),
        Case("unwritable store", ["ingest", str(f["good"])], 1, "Permission denied",
             {STORE: f"file://{f['readonly_store']}"}, obey_permissions=True),
        Case("missing label export", [*IMPORT, "/nonexistent.json"], 1, "/nonexistent.json"),
        Case("label export not JSON", [*IMPORT, str(f["not_json"])], 1, "not a readable JSON label export"),
        Case("label export a folder", [*IMPORT, str(f["folder"])], 1, str(f["folder"])),
        Case("label export a number", [*IMPORT, str(f["object_json"])], 1, "is a JSON list of label rows"),
        Case("only bad videos", ["ingest", str(f["folder"]), str(f["broken_link"]), "/nonexistent.mp4"], 1,
             "is a broken symbolic link"),
        Case("unknown clip", ["clip", "show", "0123456789abcdef-0000000"], 1, "no clip"),
        Case("clip id with a path", ["clip", "show", "../../etc/passwd"], 1, "no clip"),
        Case("unknown model", ["evaluate", "m-0000000000"], 1, "no model"),
        Case("unknown datasets", ["dataset", "diff", "default@1", "default@2"], 1, "no dataset"),
        Case("unknown dataset", ["train", "--dataset", "nosuch"], 1, "no dataset"),
        Case("nothing to snapshot", ["dataset", "build"], 1, "dataset"),
    ]  # fmt: skip
    return usage + state


def test_hostile_input_gets_a_clear_error_and_no_traceback(tmp_path: Path) -> None:
    files = _files(tmp_path / "hostile")
    base_env = {
        "DATAENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}",
        "DATAENGINE_STORAGE_URL": f"file://{tmp_path / 'store'}",
    }
    cases = _catalogue(files)

    def run(case: Case) -> tuple[Case, int, str]:
        done = run_cli(case.args, {**base_env, **case.env}, obey_permissions=case.obey_permissions)
        return case, done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, cases))

    problems = []
    for case, code, output in results:
        if "Traceback" in output or "unexpected" in output:
            problems.append(f"{case.name}: a traceback or unexpected error:\n{output}")
        elif code != case.code or case.says not in output:
            problems.append(f"{case.name}: exit {code} (want {case.code}), output:\n{output}")
    assert problems == [], "\n\n".join(problems)
    assert "hunter2" not in "".join(output for _, _, output in results)


@pytest.mark.parametrize("command", [["status"], ["quarantine", "list"], ["clips", "list", "--json"]])
def test_a_fresh_engine_answers(tmp_path: Path, command: list[str]) -> None:
    env = {
        "DATAENGINE_DATABASE_URL": f"sqlite:///{tmp_path / 'lineage.db'}",
        "DATAENGINE_STORAGE_URL": f"file://{tmp_path / 'store'}",
    }
    done = run_cli(command, env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
