"""The periodic sweep: shipments that went quiet or passed their promise get a refresh.

The refresh job's planner decides whether "stalled" or "missed promise" applies; the
sweep only finds candidates. One worker sweeps at a time (an advisory lock).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from service.clock import Clock
from service.store import shipments as shipments_db
from service.store import work as work_db
from workers.supervisor import Beat

SWEEP_LOCK = 0x5045_4550  # arbitrary, fixed advisory-lock key


async def sweep_once(pool: asyncpg.Pool, clock: Clock,
                     stalled_after: timedelta = timedelta(hours=48)) -> int:
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
            return 0
        candidates = await shipments_db.sweep_candidates(conn, now, stalled_after)
        await work_db.add(conn, work_db.REFRESH_SHIPMENT, candidates, now)
    return len(candidates)


async def sweep_forever(pool: asyncpg.Pool, clock: Clock, interval: float,
                        stalled_after: timedelta, beat: Beat) -> None:
    """Sweep every `interval` seconds until cancelled (supervised: a failure ends it, and
    the restart sweeps at once)."""
    while True:
        await sweep_once(pool, clock, stalled_after)
        beat()
        await asyncio.sleep(interval)
