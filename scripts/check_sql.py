"""Fail when code outside ``dataengine.lineage`` speaks SQL: ``make lint`` runs this beside lint-imports.

lint-imports (pyproject.toml) already refuses ``sqlalchemy`` and ``lineage.models`` imports outside
``lineage``; this catches what an import rule cannot see: a query method called on a session that came
from elsewhere (``session.execute``, ``session.scalars``, ``session.get``, ...), and the same imports in
``dags/`` and ``plugins/``, which live outside the ``dataengine`` package.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where SQL is allowed.
LINEAGE = ROOT / "src" / "dataengine" / "lineage"
CHECKED = (ROOT / "src" / "dataengine", ROOT / "dags", ROOT / "plugins")
#: Session methods that build or run a query, or write rows (commit, rollback and close are fine).
QUERY_METHODS = frozenset(
    {"execute", "scalars", "scalar", "query", "get", "add", "add_all", "delete", "merge", "connection"}
)
FORBIDDEN_MODULES = ("sqlalchemy", "alembic", "dataengine.lineage.models")


def _receiver_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    return ""


def _forbidden(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in FORBIDDEN_MODULES)


def violations_in(source: str, filename: str) -> Iterator[str]:
    """``file:line: problem`` for each SQL construct in ``source``."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            names = []
        for name in names:
            if _forbidden(name):
                yield f"{filename}:{node.lineno}: imports {name}; SQL belongs in dataengine.lineage"
                break
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in QUERY_METHODS
            and "session" in _receiver_name(node.func.value).lower()
        ):
            yield (
                f"{filename}:{node.lineno}: calls session.{node.func.attr}(); "
                "ask a function of dataengine.lineage instead"
            )


def python_files(roots: Iterable[Path]) -> Iterator[Path]:
    """Every ``.py`` file under ``roots`` outside ``dataengine.lineage``."""
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if LINEAGE not in path.parents:
                yield path


def main() -> int:
    found = [
        problem
        for path in python_files(CHECKED)
        for problem in violations_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print(f"{len(found)} SQL construct(s) outside dataengine.lineage", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
