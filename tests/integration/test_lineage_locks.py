"""Named locks between runs on one lineage database: exclusive, and dropped when the holder dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from dataengine.lineage.db import Database

_HOLDER = """
import sys, time
from dataengine.lineage.db import Database
with Database(sys.argv[1]).lock("ingest/abc") as held:
    print("held" if held else "busy", flush=True)
    time.sleep(60)
"""


def test_a_lock_is_held_once_per_name(db: Database) -> None:
    with db.lock("ingest/abc") as first:
        assert first
        with db.lock("ingest/abc") as second:
            assert not second
        with db.lock("ingest/other") as other:
            assert other
    with db.lock("ingest/abc") as again:
        assert again


def test_a_killed_holder_drops_its_lock(db: Database) -> None:
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, db.url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with db.lock("ingest/abc") as held:
            assert not held
        started = time.monotonic()
        with db.lock("ingest/abc", wait_seconds=0.5) as held:
            assert not held
        assert time.monotonic() - started >= 0.5
        child.send_signal(signal.SIGKILL)
        child.wait()
        with db.lock("ingest/abc", wait_seconds=10) as held:
            assert held
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
