"""Drills: real processes and servers, faults injected, and the figures each one measured
(printed at the end of the run and written to PARCELCAST_DRILL_REPORT, else drills.json in
pytest's temporary folder)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import OwnPostgres, postgres_binaries

FIGURES: dict[str, dict[str, Any]] = {}
Report = Callable[[str, dict[str, Any]], None]


@pytest.fixture
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    def record(drill: str, figures: dict[str, Any]) -> None:
        FIGURES[drill] = figures
        print(f"\ndrill {drill}: {json.dumps(figures, sort_keys=True)}")
        path = Path(os.environ.get("PARCELCAST_DRILL_REPORT")
                    or tmp_path_factory.getbasetemp() / "drills.json")
        path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("drill figures")
    for drill, figures in FIGURES.items():
        terminalreporter.write_line(f"{drill}: {json.dumps(figures, sort_keys=True)}")


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of the test's own, which it may restart and stop."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("initdb/pg_ctl not found (install the PostgreSQL server package to run "
                    "the database restart drill)")
    server = OwnPostgres(binaries).init()
    server.start()
    yield server
    server.destroy()
