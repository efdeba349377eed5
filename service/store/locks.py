"""Session advisory locks: one holder at a time of a kind of work, across processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def session_lock(conn: asyncpg.Connection, key: int) -> AsyncIterator[bool]:
    """Hold advisory lock `key` on this session for the block if nobody else holds it (True),
    else False at once. Unlocked at the end; when the unlock cannot run (cancelled, the
    connection lost) the connection is closed instead, so no pooled session keeps the lock
    (the pool keeps sessions as they are, service.store.pool.keep_session)."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
        yield False
        return
    try:
        yield True
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
        except BaseException:
            conn.terminate()
            raise
