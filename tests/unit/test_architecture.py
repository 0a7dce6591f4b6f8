"""The layering rules `make lint` enforces: SQL only in dataengine.lineage (scripts/check_sql.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_sql", ROOT / "scripts" / "check_sql.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checker_finds_queries_and_sql_imports() -> None:
    source = (
        "from sqlalchemy import select\n"
        "import dataengine.lineage.models\n"
        "from dataengine.lineage import Session\n"
        "def f(session: Session) -> None:\n"
        "    session.execute(select(1))\n"
        "    ctx.db.session().get(Clip, 'x')\n"
        "    session.commit()\n"
    )
    found = list(_checker().violations_in(source, "stage.py"))
    assert found == [
        "stage.py:1: imports sqlalchemy; SQL belongs in dataengine.lineage",
        "stage.py:2: imports dataengine.lineage.models; SQL belongs in dataengine.lineage",
        "stage.py:5: calls session.execute(); ask a function of dataengine.lineage instead",
        "stage.py:6: calls session.get(); ask a function of dataengine.lineage instead",
    ]


def test_no_sql_outside_lineage() -> None:
    checker = _checker()
    files = list(checker.python_files(checker.CHECKED))
    assert any(path.name == "snapshot.py" for path in files)
    assert not any("lineage" in path.parts for path in files)
    problems = [problem for path in files for problem in checker.violations_in(path.read_text(), str(path))]
    assert problems == []
