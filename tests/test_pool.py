"""The pool keeps sessions as they are at release (service.store.pool.keep_session): nothing a
connection did may reach the next user of it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from service.store.pool import create_pool
from tests.conftest import KeyFactory
from workers.exclusive import one_worker

KEY = 0x7465_7374  # an advisory-lock key no job uses


async def _holders(conn: asyncpg.Connection) -> int:
    # This database's only: pg_locks shows the server's, and other test processes (pytest-xdist
    # workers, other runs) take the same key in databases of their own.
    count: int = await conn.fetchval(
        """SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        KEY)
    return count


async def test_exclusive_work_hands_its_lock_back_before_the_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    other = await asyncpg.connect(database_url)
    try:
        async with one_worker(pool, KEY) as conn:
            assert conn is not None
            assert await _holders(other) == 1
        assert await _holders(other) == 0  # the pooled session no longer holds it
        async with pool.acquire() as conn:
            await conn.execute("SELECT set_config('statement_timeout', '1234', true)")
        async with pool.acquire() as conn:  # a transaction-local setting did not stay
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
    finally:
        await other.close()
        await pool.close()


async def test_exclusive_work_cancelled_while_unlocking_never_keeps_the_lock(
        database_url: str) -> None:
    """Cancelled twice (the job stopped, then stopped again during its clean-up): the unlock
    may not have run, so the connection is closed instead of going back to the pool holding
    the lock, and another worker can take the work."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    other = await asyncpg.connect(database_url)
    inside = asyncio.Event()

    async def exclusive_job() -> None:
        async with one_worker(pool, KEY) as conn:
            assert conn is not None
            inside.set()
            await asyncio.Event().wait()

    try:
        job = asyncio.create_task(exclusive_job())
        await asyncio.wait_for(inside.wait(), 30)
        job.cancel()
        for _ in range(3):  # into the clean-up's unlock, awaiting the server
            await asyncio.sleep(0)
        job.cancel()
        try:
            await job
        except asyncio.CancelledError:
            pass
        for _ in range(300):  # the server ends the closed session's locks shortly
            if await _holders(other) == 0:
                break
            await asyncio.sleep(0.1)
        assert await _holders(other) == 0
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", KEY)
    finally:
        await other.close()
        await pool.close()


async def test_an_api_process_holds_no_more_connections_than_its_pool_size(
        aiohttp_client: Any, settings: Settings, clock: ManualClock, make_key: KeyFactory,
        database_url: str) -> None:
    """DATABASE_POOL_SIZE bounds what one API process holds, named `parcelcast-api` in
    pg_stat_activity, however many requests arrive at once (the connection budget of
    docs/operations.md)."""
    client: TestClient = await aiohttp_client(
        create_app(settings.model_copy(update={"database_pool_size": 3}), clock))
    headers = await make_key("shipments:read")
    other = await asyncpg.connect(database_url)
    try:
        answers = await asyncio.gather(*(
            client.get(f"/v1/shipments/missing-{i}", headers=headers) for i in range(40)))
        assert {answer.status for answer in answers} == {404}
        held = await other.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND application_name = 'parcelcast-api'""")
        assert 1 <= held <= 3
    finally:
        await other.close()
