"""Fixtures: a database of its own per test run, real Redis, the app, keys, a manual clock."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from predictor.model import EtaModel
from service.api.app import create_app
from service.clock import ManualClock
from service.security.api_keys import new_key
from service.settings import Settings, load_settings
from service.store import api_keys
from service.store.migrations import upgrade
from service.store.pool import create_pool
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.models import small_model
from tests.servers import postgres_admin_url, redis_url, with_database

# Every table the migrations create is emptied before each test, except these: the schema
# version, and the notification rules the migrations seed (configuration, not data).
KEPT_TABLES = ("alembic_version", "notification_rules")
START = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgres_admin(tmp_path_factory: pytest.TempPathFactory) -> str:
    return postgres_admin_url(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
def database_url(postgres_admin: str) -> Iterator[str]:
    """A fresh, migrated database for this test run, dropped at the end."""
    name = f"parcelcast_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = with_database(postgres_admin, name)
    upgrade(url)
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def eta_model() -> EtaModel:
    """A small trained model (seconds, once per run) for tests that need a champion."""
    return small_model()


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    return redis_url()


@pytest.fixture
def settings(database_url: str, redis_server_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        database_url=database_url, redis_url=redis_server_url,
        parcelcast_data_dir=tmp_path / "data",
        parcelcast_queue_name=f"parcelcast:test:{uuid.uuid4().hex[:10]}",
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=5)
    async with pool.acquire() as conn:
        tables = await conn.fetchval(
            """SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
               WHERE schemaname = 'public' AND NOT tablename = ANY($1::text[])""",
            list(KEPT_TABLES))
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    yield pool
    await pool.close()


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> TestClient:
    return await aiohttp_client(create_app(settings, clock))


KeyFactory = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
def make_key(pool: asyncpg.Pool) -> KeyFactory:
    async def make(*scopes: str) -> dict[str, str]:
        key_id, key, key_hash = new_key()
        async with pool.acquire() as conn:
            await api_keys.create(conn, key_id, key_hash, list(scopes), "test", START)
        return {"Authorization": f"Bearer {key}"}

    return make


@pytest.fixture
async def admin(make_key: KeyFactory) -> dict[str, str]:
    return await make_key("admin")


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandin]:
    """The Twilio-compatible stand-in, a real HTTP server on a free loopback port."""
    standin = await TwilioStandin().start()
    yield standin
    await standin.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpStandin]:
    """The aiosmtpd stand-in, a real SMTP server on a free loopback port."""
    standin = SmtpStandin().start()
    yield standin
    standin.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The drills' figures, and where the browser tests left their screenshots."""
    from tests.browser.conftest import ARTEFACTS
    from tests.drills.conftest import summary_lines

    lines = summary_lines()
    if lines:
        terminalreporter.section("drill figures")
        for line in lines:
            terminalreporter.write_line(line)
    shots = sorted(ARTEFACTS.glob("*.png")) if ARTEFACTS.exists() else []
    if shots:
        terminalreporter.write_line(
            f"browser screenshots ({len(shots)}): {ARTEFACTS}")


# In parallel (pytest-xdist, which `./run tests` uses for the whole suite): each worker process
# has a database of its own (`database_url`: its pid in the name) and every test its own queue
# name, the one prefix of everything it keeps in the shared Redis. `--dist loadfile` runs a
# file on one worker (its module fixtures are built once); here, all the drills on one worker,
# one after the other, and the longest files first, so no worker is left with a long tail.
DRILLS = "tests/drills/"
# The files that took longest in a serial run (--durations; load 13-15 on 2 cores), longest
# first: a Dask cluster's start-up, the CLI's processes, the drills, the demo.
LONGEST_FIRST = (
    "tests/predictor/test_distributed.py",
    "tests/test_cli.py",
    DRILLS,
    "tests/test_train_dask.py",
    "tests/test_demo.py",
    "tests/predictor/test_model.py",
    "tests/predictor/test_features.py",
    "tests/predictor/test_backtest.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DrillsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path: str = super()._split_scope(nodeid)
            return DRILLS if path.startswith(DRILLS) else path

    config.option.loadscopereorder = False  # the order of collection (below), not the count
    return DrillsTogether(config, log)


def _file_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    for rank, prefix in enumerate(LONGEST_FIRST):
        if path.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a pytest-xdist worker, the longest files first (the controller hands out files in
    the order the workers collected them)."""
    if hasattr(config, "workerinput"):
        items.sort(key=_file_rank)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker sends its drills' figures to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        from tests.drills.conftest import FIGURES

        output["drill_figures"] = json.dumps(FIGURES, default=str)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller gathers the workers' drill figures, for the summary and the report."""
    from tests.drills.conftest import FIGURES, save_figures

    figures = json.loads(getattr(node, "workeroutput", {}).get("drill_figures", "{}"))
    if figures:
        FIGURES.update(figures)
        save_figures(None)
