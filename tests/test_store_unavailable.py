"""PostgreSQL going away under the API (as in a restart or failover) is a 503, never a 500.

A restart ends every server process: a statement in flight gets 57P01 (admin shutdown),
an idle pooled connection is found closed on its next use. Both are done here for real,
with pg_terminate_backend on the app's own connections, while an admin connection holds a
lock so one request is mid-statement when its backend goes.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from service.store.pool import STORE_UNAVAILABLE
from tests.builders import order

TERMINATE_OTHERS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'parcelcast%'
"""


async def test_a_database_restart_is_503_then_service_resumes(
    client: TestClient, admin: dict[str, str], database_url: str
) -> None:
    assert (await client.get("/v1/orders/o-0", headers=admin)).status == 404  # pool is warm
    conn = await asyncpg.connect(database_url, server_settings={"application_name": "admin"})
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            put = asyncio.create_task(client.put("/v1/orders/o-1", json=order(), headers=admin))
            for _ in range(500):
                waiting = await conn.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'parcelcast-api' AND wait_event_type = 'Lock'")
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the request never reached the locked table"
            await conn.execute(TERMINATE_OTHERS)  # mid-statement and idle alike
            answer = await put
        assert answer.status == 503, await answer.text()
        assert answer.content_type == "application/problem+json"
        assert answer.headers["Retry-After"]
        # Idle connections were closed under the pool too: each next use is a 503 or works.
        statuses = [(await client.get("/v1/orders/o-0", headers=admin)).status
                    for _ in range(12)]
        assert set(statuses) <= {503, 404} and statuses[-1] == 404, statuses
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0  # nothing half-written
        retry = await client.put("/v1/orders/o-1", json=order(), headers=admin)
        assert retry.status == 201
    finally:
        await conn.close()


def test_what_counts_as_the_store_being_unavailable() -> None:
    # The classes a restart, failover or overload raises (see service.store.pool).
    for exc in (asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
                asyncpg.exceptions.CannotConnectNowError,
                asyncpg.exceptions.ConnectionDoesNotExistError,
                asyncpg.exceptions.TooManyConnectionsError, asyncpg.InterfaceError,
                asyncpg.InternalClientError, asyncpg.exceptions.ReadOnlySQLTransactionError,
                asyncpg.exceptions.DeadlockDetectedError, ConnectionResetError, TimeoutError):
        assert issubclass(exc, STORE_UNAVAILABLE), exc
    assert not issubclass(asyncpg.exceptions.UniqueViolationError, STORE_UNAVAILABLE)
    assert not issubclass(asyncpg.exceptions.DataError, STORE_UNAVAILABLE)
