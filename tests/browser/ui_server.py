"""Starting a real Airflow API server with our plugin, and what the browser tests need to reach it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataengine.config import Settings
from dataengine.context import Context
from ui_scene import Scene, build_scene

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Set to docs/img to refresh the README's screenshots; otherwise they go to a temporary folder.
#: Relative to the folder pytest started in (tests run in their own temporary folders).
SCREENSHOTS = (
    Path(os.environ["UI_SCREENSHOTS_DIR"]).resolve() if os.environ.get("UI_SCREENSHOTS_DIR") else None
)


def missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"browser tests skipped: no {CHROMIUM} (apt-get install -y chromium chromium-driver)"
    if importlib.util.find_spec("playwright") is None:
        return "browser tests skipped: the playwright package is not installed (pip install -e '.[dev]')"
    if shutil.which("airflow", path=str(Path(sys.executable).parent)) is None:
        return "browser tests skipped: apache-airflow is not installed in this environment"
    return None


@dataclass
class AirflowUI:
    """The running API server, its admin login, and the engine its plugin reads."""

    url: str
    user: str
    password: str
    ctx: Context
    scene: Scene
    screenshots: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"airflow api-server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/api/v2/version", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"airflow api-server did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def airflow_env(home: Path, ctx: Context) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DATAENGINE_"))},
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "browser-test-secret",
        "DATAENGINE_DATABASE_URL": ctx.settings.database_url,
        "DATAENGINE_STORAGE_URL": ctx.settings.storage_url,
    }


@contextmanager
def running_airflow_ui(root: Path) -> Iterator[AirflowUI]:
    """``airflow api-server`` on a free port with plugins/ loaded, over a fresh engine with the scene."""
    settings = Settings(
        database_url=f"sqlite:///{root / 'lineage.db'}", storage_url=f"file://{root / 'store'}"
    )
    ctx = Context.create(settings, run_id="test/browser")
    scene = build_scene(ctx)
    home = root / "airflow"
    (home / "dags").mkdir(parents=True)
    env = airflow_env(home, ctx)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        cwd=root,
    )
    port, log = free_port(), root / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "airflow"),
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        shots = SCREENSHOTS or root / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        yield AirflowUI(url, "admin", passwords["admin"], ctx, scene, shots)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        ctx.close()


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
