"""The fault suite's fixtures (a pytest plugin of its test modules): one clean run of the loop per
database, frozen before every stage, and the zygote that forks every CLI run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from faultkit import STAGES, ZYGOTE, Reference, new_engine, postgres_missing, snapshot

PG_MISSING = postgres_missing()


@pytest.fixture(scope="module")
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    """The loop run once, cleanly, on the module's ``BACKEND``: synthetic video, then every stage."""
    backend: str = request.module.BACKEND
    if backend == "postgres" and PG_MISSING:
        pytest.skip(f"PostgreSQL fault tests skipped: {PG_MISSING}")
    folder = tmp_path_factory.mktemp(f"faults-{backend}")
    ref = Reference(backend, folder / "store")
    engine = new_engine(folder / "clean", backend, ref.created, ref.store)
    try:
        engine.ok(["init"])
        engine.ok(["synthetic", "--videos", "2", "--seconds", "2", "--seed", "7"])
        for stage, args in STAGES.items():
            ref.before[stage] = snapshot(engine, folder / f"before-{stage}", backend, ref.created)
            counting = folder / f"counts-{stage}"
            counting.mkdir()
            proc = engine.start(args, plan="count:none:0", fault_dir=counting)
            code, out = engine.finish(proc, args)
            assert code == 0, f"the clean run's {stage} failed:\n{out}"
            ref.counts[stage] = json.loads((counting / "counts.json").read_text())
            ref.after[stage] = engine.state()
        yield ref
    finally:
        ref.close()


@pytest.fixture(scope="session", autouse=True)
def _zygote() -> Iterator[None]:
    """The zygote that forks the suite's CLI runs, stopped at the end."""
    yield
    ZYGOTE.stop()
