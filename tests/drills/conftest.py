"""Drills: real processes and servers, faults injected, and the figures each one measured
(printed at the end of the run and written to PARCELCAST_DRILL_REPORT, else drills.json in
pytest's temporary folder)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from predictor.model import EtaModel
from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.drills.harness import Sender
from tests.models import install_champion
from tests.notifying import wired
from tests.servers import OwnPostgres, postgres_binaries
from tests.test_notifications import NOON_LA

FIGURES: dict[str, dict[str, Any]] = {}
Report = Callable[[str, dict[str, Any]], None]


def save_figures(folder: Path | None) -> None:
    """Write FIGURES to PARCELCAST_DRILL_REPORT, else to drills.json in `folder` (None: to
    the file named only)."""
    named = os.environ.get("PARCELCAST_DRILL_REPORT")
    path = Path(named) if named else None if folder is None else folder / "drills.json"
    if path is not None:
        path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True, default=str))


@pytest.fixture
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    def record(drill: str, figures: dict[str, Any]) -> None:
        FIGURES[drill] = figures
        print(f"\ndrill {drill}: {json.dumps(figures, sort_keys=True, default=str)}")
        save_figures(tmp_path_factory.getbasetemp())

    return record


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A drill starts processes and waits on them with generous deadlines; on a loaded
    machine it may take longer than the suite's per-test limit allows an ordinary test."""
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.timeout(900))


def summary_lines() -> list[str]:
    """The figures' lines at the end of the run (tests/conftest.py prints them: the one
    conftest the pytest-xdist controller loads, which receives the workers' FIGURES)."""
    return [f"{drill}: {json.dumps(figures, sort_keys=True, default=str)}"
            for drill, figures in FIGURES.items()]


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


@dataclass
class Stack:
    """The API (in this process, on a real socket), its settings and clock (noon in the
    customers' zone), the provider stand-ins, a champion model, and a retrying sender."""

    settings: Settings
    clock: ManualClock
    api: TestClient
    sender: Sender
    pool: asyncpg.Pool
    twilio: TwilioStandin
    smtp: SmtpStandin

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.settings.database_url)


MakeStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def make_stack(aiohttp_client, settings: Settings, clock: ManualClock,  # type: ignore[no-untyped-def]
               pool: asyncpg.Pool, admin: dict[str, str], twilio: TwilioStandin,
               smtp: SmtpStandin, eta_model: EtaModel) -> MakeStack:
    async def make(**overrides: Any) -> Stack:
        clock.set(NOON_LA)
        wired_settings = wired(settings, twilio, smtp).model_copy(update=overrides)
        async with pool.acquire() as conn:
            await install_champion(conn, eta_model, clock.now())
        api = await aiohttp_client(create_app(wired_settings, clock))
        return Stack(wired_settings, clock, api, Sender(api, admin), pool, twilio, smtp)

    return make
