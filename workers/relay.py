"""The relay: hands outbox work items to arq, and hands them again if they go missing.

Two supervised loops (workers.supervisor): `listen` keeps a connection LISTENing for the
NOTIFY sent when new work is committed, and `handoff` hands due items over, woken by it and
polling as a fallback. If Redis or PostgreSQL is down the claiming transaction rolls back,
the items stay pending, and the loop fails and is restarted with backoff: accepted work is
never lost, only delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import asyncpg
from arq.connections import ArqRedis

from service.clock import Clock
from service.store import work
from workers.jobs import JOBS
from workers.supervisor import Beat

log = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY = 64
# How often the listening connection proves it is alive (a half-open TCP connection
# never reports its own death).
LISTEN_CHECK_S = 10.0


class ListenerLost(ConnectionError):
    """The LISTEN connection closed or stopped answering."""


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

    async def handoff_forever(self, beat: Beat) -> None:
        """Hand off due work until cancelled (supervised: a failure ends it, to be restarted)."""
        while True:
            self._wake.clear()
            count = await self.handoff_once()
            beat()
            if count >= self.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def listen_forever(self, beat: Beat) -> None:
        """Keep one connection LISTENing for new work (supervised: a lost connection ends it,
        and the restart listens on a fresh one)."""
        lost = asyncio.Event()
        conn: asyncpg.Connection = await self.pool.acquire()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(work.CHANNEL, self._on_notify)
            self._wake.set()  # whatever was committed while nobody listened
            beat()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), LISTEN_CHECK_S)
                if lost.is_set() or conn.is_closed():
                    raise ListenerLost("the LISTEN connection closed")
                async with asyncio.timeout(LISTEN_CHECK_S):
                    await conn.fetchval("SELECT 1")
                beat()
        finally:
            # Cancelled or failed: this connection never goes back to the pool listening (a
            # restart listens on a fresh one), but the pool must get it back, or closing the
            # pool waits forever.
            conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
