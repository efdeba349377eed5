"""The relay: hands outbox work items to arq, and hands them again if they go missing.

Woken by NOTIFY when new work is committed, and polling as a fallback. If Redis is
down the claiming transaction rolls back, the items stay pending, and the relay
retries with backoff: accepted work is never lost, only delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from service.clock import Clock
from service.store import work
from workers.jobs import JOBS

log = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY = 64


class Relay:
    def __init__(
        self, pool: asyncpg.Pool, redis: ArqRedis, clock: Clock, *, stale_after: float = 60.0,
        poll_interval: float = 1.0, batch_size: int = 500,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock
        self.stale_after = timedelta(seconds=stale_after)
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.handed_off = 0
        self._wake = asyncio.Event()

    async def handoff_once(self) -> int:
        """Hand every due item of one batch to arq; raises (and rolls back) if Redis fails."""
        async with self.pool.acquire() as conn, conn.transaction():
            items = await work.claim_due(
                conn, self.clock.now(), self.stale_after, self.batch_size
            )
            if not items:
                return 0
            jobs = self._jobs(items)
            for start in range(0, len(jobs), ENQUEUE_CONCURRENCY):
                await asyncio.gather(*jobs[start:start + ENQUEUE_CONCURRENCY])
            await work.mark_enqueued(conn, items)
        self.handed_off += len(items)
        return len(items)

    def _jobs(self, items: list[work.WorkItem]) -> list[Any]:
        """Work goes to arq in batches: refreshes so the model scores them together, sends so
        one job's overhead is shared by many messages."""
        queue = self.redis.default_queue_name
        jobs = []
        for kind, job in JOBS.items():
            of_kind = [i for i in items if i.kind == kind]
            for start in range(0, len(of_kind), job.batch_size):
                batch = of_kind[start:start + job.batch_size]
                jobs.append(self.redis.enqueue_job(
                    job.name, [(i.id, i.subject_id) for i in batch],
                    _job_id=f"{batch[0].job_id(queue)}:{len(batch)}"))
        return jobs

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Hand off work until cancelled."""
        backoff = 0.0
        listener: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    if listener is None or listener.is_closed():
                        listener = await self.pool.acquire()
                        await listener.add_listener(work.CHANNEL, self._on_notify)
                    self._wake.clear()
                    count = await self.handoff_once()
                    if backoff:
                        log.info("relay: Redis is back, handing off work again")
                    backoff = 0.0
                    if count >= self.batch_size:
                        continue
                except (RedisError, OSError, asyncpg.PostgresError) as exc:
                    if not backoff:
                        log.warning("relay: cannot hand off work (%s); retrying", exc)
                    backoff = min(5.0, max(0.1, backoff * 2))
                    if listener is not None and isinstance(exc, OSError | asyncpg.PostgresError):
                        await self._release(listener)
                        listener = None
                    await asyncio.sleep(backoff)
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                except TimeoutError:
                    pass
        finally:
            # Cancelled anywhere in the loop: the pool must get its connection back, or
            # closing the pool waits forever.
            if listener is not None:
                await self._release(listener)

    async def _release(self, listener: asyncpg.Connection) -> None:
        # Given back even when cancelled again meanwhile (a stopping worker cancels its
        # relay twice): a connection never given back makes closing the pool wait forever.
        # asyncpg's release is shielded and its reset unlistens.
        try:
            await listener.remove_listener(work.CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            listener.terminate()
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self.pool.release(listener)
