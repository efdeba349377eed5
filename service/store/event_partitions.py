"""The monthly partitions of `tracking_events` (migration 0013) and their dedupe keys:
listing, creating (moving what the default partition holds for the month), dropping.

Every change runs in its own transaction with a short lock timeout: creating or dropping a
partition locks the whole table for an instant, and waiting behind a long query would make
every ingest wait behind it. A change that times out is tried again at the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

PARENT = "tracking_events"
DEFAULT = "tracking_events_default"
KEYS = "tracking_event_keys"
MAINTENANCE_LOCK = 0x5041_5254  # arbitrary, fixed advisory-lock key: one maintenance at a time
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: the default partition (no bounds)
    end: datetime | None


def partition_name(start: datetime) -> str:
    """`tracking_events_pYYYY_MM` for the month starting at `start` (UTC)."""
    return f"{PARENT}_p{start.year:04d}_{start.month:02d}"


LIST = r"""
SELECT c.relname AS name, b[1]::timestamptz AS start, b[2]::timestamptz AS "end"
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                               'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b ON true
WHERE i.inhparent = 'tracking_events'::regclass
ORDER BY start NULLS LAST, name
"""


async def partitions(conn: asyncpg.Connection) -> list[Partition]:
    """Every partition of tracking_events, oldest first, the default one last."""
    return [Partition(r["name"], r["start"], r["end"]) for r in await conn.fetch(LIST)]


async def default_months(conn: asyncpg.Connection) -> list[datetime]:
    """The UTC months of the rows the default partition holds (usually none)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT date_trunc('month', received_at, 'UTC') AS m FROM {DEFAULT} "
        "ORDER BY m")
    return [r["m"] for r in rows]


async def count_between(conn: asyncpg.Connection, table: str, start: datetime | None,
                        end: datetime) -> int:
    """Events of `table` (a partition) received in [start, end); all before `end` if no start."""
    return int(await conn.fetchval(
        f"SELECT count(*) FROM {table} WHERE ($1::timestamptz IS NULL OR received_at >= $1) "
        "AND received_at < $2", start, end))


async def _lock_parent(conn: asyncpg.Connection) -> None:
    """The table itself (not its partitions), as creating or dropping a partition would lock
    it: first, so no insert can slip in between; within LOCK_TIMEOUT or not at all."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    await conn.execute(f"LOCK TABLE ONLY {PARENT} IN ACCESS EXCLUSIVE MODE")


async def create(conn: asyncpg.Connection, start: datetime, end: datetime) -> int:
    """Create the partition for [start, end); rows the default partition holds for that range
    move into it (received_at and ids unchanged, so their keys still point at them). How many
    moved."""
    name = partition_name(start)
    async with conn.transaction():
        await _lock_parent(conn)
        moved = await count_between(conn, DEFAULT, start, end)
        if moved:
            # A range the default partition holds rows of cannot be given a partition.
            await conn.execute(f"CREATE TEMP TABLE moving_events (LIKE {PARENT}) ON COMMIT DROP")
            await conn.execute(
                f"""WITH gone AS (DELETE FROM {DEFAULT}
                                  WHERE received_at >= $1 AND received_at < $2 RETURNING *)
                    INSERT INTO moving_events SELECT * FROM gone""", start, end)
        await conn.execute(
            f'CREATE TABLE "{name}" PARTITION OF {PARENT} '
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')")
        if moved:
            await conn.execute(f"INSERT INTO {PARENT} SELECT * FROM moving_events")
    return moved


async def drop(conn: asyncpg.Connection, partition: Partition) -> int:
    """Drop a month's partition with its events and their dedupe keys (a replay of one of
    them is then a new event); how many events went."""
    if partition.start is None or partition.end is None:
        raise ValueError("the default partition is never dropped")
    async with conn.transaction():
        await _lock_parent(conn)
        status = await conn.execute(
            f"DELETE FROM {KEYS} WHERE received_at >= $1 AND received_at < $2",
            partition.start, partition.end)
        await conn.execute(f'DROP TABLE "{partition.name}"')
    return int(status.rsplit(" ", 1)[1])


async def expire_default(conn: asyncpg.Connection, before: datetime) -> int:
    """Delete the default partition's events received before `before`, with their keys."""
    async with conn.transaction():
        status = await conn.execute(
            f"""WITH gone AS (DELETE FROM {DEFAULT} WHERE received_at < $1
                              RETURNING dedupe_key)
                DELETE FROM {KEYS} k USING gone g WHERE k.dedupe_key = g.dedupe_key""",
            before)
    return int(status.rsplit(" ", 1)[1])
