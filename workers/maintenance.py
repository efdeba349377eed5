"""The maintenance loops: tracking events' partitions made ahead of time and expired ones
dropped (service.tracking.retention, the same as `parcelcast maintenance`), every
MAINTENANCE_INTERVAL_S seconds, one worker at a time (the maintenance's advisory lock); and,
on a server whose autovacuum is off, autovacuum's work done by hand (service.store.vacuum),
every VACUUM_CHECK_S seconds, one worker at a time."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from service.clock import Clock
from service.settings import Settings
from service.store import vacuum
from service.store.locks import session_lock
from service.tracking.retention import Report, maintain
from workers.supervisor import Beat

log = logging.getLogger(__name__)

# How often the tables are checked against their autovacuum thresholds (a look at the
# statistics views; `work_items` passes its 2,000 dead rows every few seconds under load).
VACUUM_CHECK_S = 5.0


async def maintain_once(pool: asyncpg.Pool, clock: Clock, settings: Settings) -> Report | None:
    """One run, unless another worker (or `parcelcast maintenance`) is running one (None)."""
    async with pool.acquire() as conn:  # maintain() takes the maintenance's lock itself
        report = await maintain(conn, clock.now(), settings.event_partitions_ahead,
                                settings.event_retention_months)
    if report.skipped:
        return None
    for created in report.created:
        log.info("maintenance: created %s (%d events from the default partition)",
                 created["name"], created["moved_from_default"])
    for dropped in report.dropped:
        log.info("maintenance: dropped %s (%d events past the retention)", dropped["name"],
                 dropped["events"])
    for change in report.postponed:
        log.warning("maintenance: %s postponed (the table stayed busy past the lock "
                    "timeout); trying again in %.0f s", change, settings.maintenance_interval_s)
    if report.expired_from_default:
        log.info("maintenance: deleted %d expired events from the default partition",
                 report.expired_from_default)
    return report


async def maintain_forever(pool: asyncpg.Pool, clock: Clock, settings: Settings,
                           beat: Beat) -> None:
    """Maintain at once, then every MAINTENANCE_INTERVAL_S seconds, until cancelled
    (supervised: a failure, e.g. a lock not had within its timeout, ends it, and the
    restart tries again)."""
    while True:
        await maintain_once(pool, clock, settings)
        beat()
        await asyncio.sleep(settings.maintenance_interval_s)


async def vacuum_once(pool: asyncpg.Pool) -> list[vacuum.Due] | None:
    """Vacuum and analyze the tables past their autovacuum thresholds, if the server's
    autovacuum is off (None when it is on, or another worker is at it)."""
    async with pool.acquire() as conn:
        if await vacuum.autovacuum_on(conn):
            return None
        async with session_lock(conn, vacuum.VACUUM_LOCK) as held:
            if not held:
                return None
            tables = await vacuum.due(conn)
            for table in tables:
                await vacuum.run(conn, table)
    return tables


async def vacuum_forever(pool: asyncpg.Pool, beat: Beat, every_s: float = VACUUM_CHECK_S
                         ) -> None:
    """Do autovacuum's work while the server's autovacuum is off, until cancelled
    (supervised: a failure ends it, and the restart checks again)."""
    warned = False
    while True:
        done = await vacuum_once(pool)
        if done is not None and not warned:
            log.warning("PostgreSQL's autovacuum is off: the workers vacuum and analyze the "
                        "tables themselves (docs/operations.md)")
            warned = True
        beat()
        await asyncio.sleep(every_s)
