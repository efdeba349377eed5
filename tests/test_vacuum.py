"""With the server's autovacuum off, the workers vacuum and analyze the hot tables themselves,
by each table's own autovacuum thresholds (service.store.vacuum, workers.maintenance)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from service.store import vacuum, work
from workers.maintenance import vacuum_once

NOW = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)


async def _churn(conn: asyncpg.Connection, items: int) -> None:
    """`items` refreshes through their whole life: queued, handed over, leased, done."""
    for start in range(0, items, 500):
        at = NOW + timedelta(seconds=start)
        await work.add(conn, work.REFRESH_SHIPMENT, [f"s{start + i}" for i in range(500)], at)
        async with conn.transaction():
            claimed = await work.claim_due(conn, at, 500)
            await work.mark_enqueued(conn, claimed, [f"job{c.id}" for c in claimed])
        await work.lease(conn, [c.id for c in claimed], "job", 60)
        await conn.execute("DELETE FROM work_items WHERE id = ANY($1::bigint[])",
                           [c.id for c in claimed])
    # This session's counts reach the statistics views when it is next idle.
    await conn.execute("SELECT pg_stat_force_next_flush()")


async def _stats(conn: asyncpg.Connection, table: str) -> asyncpg.Record:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return await conn.fetchrow(
        """SELECT s.n_dead_tup, s.vacuum_count, s.analyze_count, c.reltuples
           FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
           WHERE s.relname = $1""", table)


async def test_with_autovacuum_off_the_outbox_is_vacuumed_past_its_threshold(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        if await vacuum.autovacuum_on(conn):
            pytest.skip("the server's autovacuum is on: it does this itself")
        await _churn(conn, 500)  # at most 1,500 dead rows: under work_items' 2,000
        before = await _stats(conn, "work_items")
    done = await vacuum_once(pool)
    assert done is not None
    assert "work_items" not in {d.table for d in done if d.vacuum}

    async with pool.acquire() as conn:
        await _churn(conn, 2500)  # past it
        dead = (await _stats(conn, "work_items"))["n_dead_tup"]
        assert dead > 2000
    done = await vacuum_once(pool)
    assert done is not None
    assert "work_items" in {d.table for d in done if d.vacuum}
    async with pool.acquire() as conn:
        after = await _stats(conn, "work_items")
        assert after["vacuum_count"] > before["vacuum_count"]
        assert after["n_dead_tup"] < dead
        # Analyzed too (5,000 changes): the planner no longer sees the empty table it was
        # migrated as.
        assert after["analyze_count"] > before["analyze_count"]
    # Nothing left to do until the next 2,000 dead rows.
    again = await vacuum_once(pool)
    assert again is not None
    assert "work_items" not in {d.table for d in again}


async def test_one_worker_vacuums_at_a_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        if await vacuum.autovacuum_on(conn):
            pytest.skip("the server's autovacuum is on: the workers leave it alone")
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", vacuum.VACUUM_LOCK)
        try:
            assert await vacuum_once(pool) is None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", vacuum.VACUUM_LOCK)
