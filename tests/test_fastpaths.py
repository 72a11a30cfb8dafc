"""Backend knowledge stays in the store, and SQLite's fast paths in one module of it (issue 14,
item 4): raw cursors, driver SQL and PRAGMAs appear in ``babysit/store/fastpaths.py`` only."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "babysit"
DRIVER = re.compile(r"exec_driver_sql|raw_connection|\.connection\.cursor\(|\bPRAGMA\b")
BACKEND = re.compile(r"is_sqlite|dialect\.name|startswith\(\"sqlite")


def _hits(pattern: re.Pattern[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.setdefault(str(path.relative_to(PACKAGE.parent)), []).append(number)
    return found


def test_driver_sql_and_pragmas_live_in_the_fast_paths_module_only():
    assert set(_hits(DRIVER)) == {"babysit/store/fastpaths.py"}


def test_no_code_outside_the_store_asks_which_database_it_is():
    outside = {f: lines for f, lines in _hits(BACKEND).items()
               if not f.startswith("babysit/store/")}
    assert outside == {}
