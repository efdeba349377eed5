"""The maintenance loop: tracking events' partitions made ahead of time and expired ones
dropped (service.tracking.retention, the same as `parcelcast maintenance`), every
MAINTENANCE_INTERVAL_S seconds, one worker at a time (the maintenance's advisory lock)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from service.clock import Clock
from service.settings import Settings
from service.tracking.retention import Report, maintain
from workers.supervisor import Beat

log = logging.getLogger(__name__)


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
