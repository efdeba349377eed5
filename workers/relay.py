"""The relay: hands outbox work items to arq, and hands them again if they go missing.

Two supervised loops (workers.supervisor): `listen` keeps a connection LISTENing for the
NOTIFY sent when new work is committed, and `handoff` hands due items over, woken by it and
polling as a fallback. If Redis or PostgreSQL is down the claiming transaction rolls back,
the items stay pending, and the loop fails and is restarted with backoff: accepted work is
never lost, only delayed.

Under load the relay must not add load: NOTIFYs arriving while it claims, or within
`DEBOUNCE_S` of the last claim, make one more claim, not one each (a scan burst is one claim
of many items); one claim at a time per process; and an item handed over is handed over
again only when its job is really gone (service.store.work: its lease ran out, or arq has no
such job), never merely because the queue is deep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from service.clock import Clock
from service.store import work
from workers.jobs import JOBS
from workers.metrics import WorkerMetrics
from workers.supervisor import Beat

log = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY = 64
# How often the listening connection proves it is alive (a half-open TCP connection
# never reports its own death).
LISTEN_CHECK_S = 10.0
# NOTIFYs within this long of a claim wait for the next one: one claim per burst.
DEBOUNCE_S = 0.05
# arq states in which a job will still run (or is running).
ALIVE = (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress)


class ListenerLost(ConnectionError):
    """The LISTEN connection closed or stopped answering."""


class Relay:
    def __init__(
        self, pool: asyncpg.Pool, redis: ArqRedis, clock: Clock, *, stale_after: float = 60.0,
        poll_interval: float = 1.0, batch_size: int = 500, metrics: WorkerMetrics | None = None,
        check_every: float | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.clock = clock
        self.stale_after = timedelta(seconds=stale_after)
        # How often handed-over items are checked for a lost job (0: at every hand-off).
        self.check_every = min(stale_after / 4, 10.0) if check_every is None else check_every
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.metrics = metrics
        self.handed_off = 0
        self.handed_again = 0
        self.max_handoffs = 0
        self._wake = asyncio.Event()
        self._claiming = asyncio.Lock()  # one claimer per process
        self._checked_at = -1e9
        self._running_unleased: dict[str, float] = {}  # job id -> first seen so

    async def handoff_once(self) -> int:
        """Hand every due item of one batch to arq (and, every `check_every`, the handed-over
        items whose job is gone); raises (and rolls back) if Redis fails."""
        async with self._claiming:
            count = await self._hand_due()
            loop_now = asyncio.get_running_loop().time()
            if loop_now - self._checked_at >= self.check_every:
                count += await self._hand_lost()
                self._checked_at = loop_now
            return count

    async def _hand_due(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            items = await work.claim_due(conn, self.clock.now(), self.batch_size)
            if items:
                await self._enqueue(conn, items)
        self._count(items, "first")
        return len(items)

    async def _hand_lost(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            waiting = await work.claim_unfinished(conn, self.stale_after, self.batch_size)
            if not waiting:
                return 0
            # A lapsed lease: the worker that took it is gone. Never leased: ask arq.
            unknown = sorted({w.job_id for w in waiting if not w.lease_expired and w.job_id})
            statuses = await asyncio.gather(*(
                Job(job_id, self.redis, _queue_name=self.redis.default_queue_name).status()
                for job_id in unknown))
            alive = {job_id for job_id, status in zip(unknown, statuses, strict=True)
                     if status in ALIVE and not self._stuck(job_id, status)}
            queued = [w.item.id for w in waiting
                      if not w.lease_expired and w.job_id in alive]
            gone = [w.item for w in waiting if w.lease_expired or w.job_id not in alive]
            await work.still_queued(conn, queued)
            if gone:
                await self._enqueue(conn, gone)
        self._count(gone, "again")
        if self.metrics is not None and queued:
            self.metrics.still_queued.inc(len(queued))
        if gone:
            lapsed = sum(w.lease_expired for w in waiting)
            log.warning("relay: %d work item(s) handed over again: %d with a lapsed lease, "
                        "%d whose job arq no longer runs", len(gone), lapsed,
                        len(gone) - lapsed)
        return len(gone)

    def _stuck(self, job_id: str, status: JobStatus) -> bool:
        """A job arq says is running, that has not leased its items for `stale_after`: its
        worker died between taking the job and leasing (arq itself would only run it again
        after its job timeout)."""
        now = asyncio.get_running_loop().time()
        for old, seen in list(self._running_unleased.items()):
            if now - seen > 10 * self.stale_after.total_seconds() + 60:
                del self._running_unleased[old]
        if status != JobStatus.in_progress:
            self._running_unleased.pop(job_id, None)
            return False
        seen = self._running_unleased.setdefault(job_id, now)
        return now - seen >= self.stale_after.total_seconds()

    async def _enqueue(self, conn: asyncpg.Connection, items: list[work.WorkItem]) -> None:
        jobs, job_ids = self._jobs(items)
        for start in range(0, len(jobs), ENQUEUE_CONCURRENCY):
            await asyncio.gather(*jobs[start:start + ENQUEUE_CONCURRENCY])
        await work.mark_enqueued(conn, [i for i, _ in job_ids], [j for _, j in job_ids])

    def _count(self, items: list[work.WorkItem], reason: str) -> None:
        if not items:
            return
        self.handed_off += len(items)
        if reason == "again":
            self.handed_again += len(items)
        self.max_handoffs = max(self.max_handoffs, *(i.handoffs for i in items))
        if self.metrics is not None:
            self.metrics.handoffs.labels(reason).inc(len(items))
            self.metrics.max_handoffs.set(self.max_handoffs)

    def _jobs(self, items: list[work.WorkItem]
              ) -> tuple[list[Any], list[tuple[work.WorkItem, str]]]:
        """Work goes to arq in batches: refreshes so the model scores them together, sends so
        one job's overhead is shared by many messages. The enqueue calls, and each item with
        its job's id."""
        queue = self.redis.default_queue_name
        jobs = []
        job_ids = []
        for kind, job in JOBS.items():
            of_kind = [i for i in items if i.kind == kind]
            size = job.per_job(len(of_kind))
            for start in range(0, len(of_kind), size):
                batch = of_kind[start:start + size]
                job_id = f"{batch[0].job_id(queue)}:{len(batch)}"
                jobs.append(self.redis.enqueue_job(
                    job.name, [(i.id, i.subject_id) for i in batch], _job_id=job_id))
                job_ids += [(i, job_id) for i in batch]
        return jobs, job_ids

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
            # Let the rest of a burst commit: its NOTIFYs make this one claim.
            await asyncio.sleep(DEBOUNCE_S)

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
            # pool waits forever. (A connection the pool already took back, as when the
            # database went away, cannot be terminated: that must not hide why it ended.)
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
