"""The job registry: which arq job does each kind of work item, and how many per job.

The relay enqueues by this table and the worker registers its functions from it, so a job
name cannot drift between the two. Every job is idempotent: the relay may hand the same
work over twice.

A job first leases its items (service.store.work.lease) and renews the lease while it works:
items another live copy of the job holds, or that are done, are skipped, and the relay hands
an item over again only once its lease has run out.

A job that finds a store unavailable or busy (service.store.transient) is put back in the
queue for a few seconds later, with backoff, on fresh connections: a database restart delays
work, and the work resumes within seconds of the database answering again. (Items that
fail for their own sake are quarantined inside the jobs: workers.isolation.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq.worker import Function, Retry, func

from service.store import work as work_db
from service.store.transient import is_outage, is_transient
from service.store.work import WorkKind
from workers.context import worker_context
from workers.refresh import refresh_shipments
from workers.sending.send import send_notifications
from workers.supervisor import backoff

log = logging.getLogger(__name__)

BatchJob = Callable[[dict[str, Any], list[tuple[int, str]]], Awaitable[Any]]

# Put back after 0.5, 1, 2, 4, then 5 s (jittered): enough tries to ride out ten minutes of
# outage; past that the relay hands the work over again once it is stale.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
OUTAGE_TRIES = 120


@dataclass(frozen=True)
class Job:
    function: BatchJob
    # Items per job: big enough to amortise a model call or a job's overhead, small enough
    # to spread over workers.
    batch_size: int
    # When the queue is deep (more items handed over at once than DEEP_SPREAD jobs of
    # batch_size), jobs of up to this many: the per-call cost of the model and of each
    # statement is shared by more items, and there are still DEEP_SPREAD jobs to spread.
    deep_batch_size: int | None = None

    @property
    def name(self) -> str:
        return self.function.__name__

    def per_job(self, waiting: int) -> int:
        """Items per job when ``waiting`` of this kind are handed over at once."""
        if self.deep_batch_size is None:
            return self.batch_size
        return max(self.batch_size, min(self.deep_batch_size, -(-waiting // DEEP_SPREAD)))


DEEP_SPREAD = 2


async def _renewing(app: Any, ids: list[int], job_id: str, lease_s: float) -> None:
    """Renew the lease on `ids` every third of it until cancelled (a failed renewal is tried
    at the next tick; a lease that lapses only means the work may be handed over again)."""
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            async with app.pool.acquire() as conn:
                await work_db.renew(conn, ids, job_id, lease_s)
        except Exception as exc:  # noqa: BLE001 - the job itself will meet the outage
            log.warning("lease renewal failed: %s: %s", type(exc).__name__, exc)


def leasing(job: BatchJob) -> BatchJob:
    """`job` on the items it could lease, with the lease renewed while it runs."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], items: list[tuple[int, str]]) -> Any:
        app = worker_context(ctx)
        job_id = str(ctx.get("job_id") or f"local:{id(items)}")
        lease_s = app.settings.parcelcast_stale_after_s
        async with app.pool.acquire() as conn:
            taken = await work_db.lease(conn, [i for i, _ in items], job_id, lease_s)
        mine = [item for item in items if item[0] in taken]
        if not mine:
            return 0
        renewal = asyncio.create_task(_renewing(app, sorted(taken), job_id, lease_s))
        try:
            return await job(ctx, mine)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal

    return run


def riding_out_outages(job: BatchJob) -> BatchJob:
    """`job`, put back in the queue (arq's Retry) when a store is unavailable or busy."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], items: list[tuple[int, str]]) -> Any:
        try:
            return await job(ctx, items)
        except Exception as exc:
            if not is_transient(exc):
                raise
            app = worker_context(ctx)
            if is_outage(exc):
                # Connections that saw the outage may be broken without knowing it yet.
                await app.pool.expire_connections()
            if app.metrics is not None:
                app.metrics.job_retries.labels(job.__name__).inc()
            delay = backoff(int(ctx.get("job_try", 1)), RETRY_FIRST_S, RETRY_MAX_S)
            log.warning("%s: %s: %s; again in %.1fs", job.__name__, type(exc).__name__, exc,
                        delay)
            raise Retry(defer=delay) from exc

    return run


JOBS: dict[WorkKind, Job] = {
    WorkKind.REFRESH_SHIPMENT: Job(refresh_shipments, 50, deep_batch_size=500),
    WorkKind.SEND_NOTIFICATION: Job(send_notifications, 25, deep_batch_size=100),
}
FUNCTIONS: list[Function] = [
    func(riding_out_outages(leasing(job.function)), name=job.name,  # type: ignore[arg-type]
         max_tries=OUTAGE_TRIES)
    for job in JOBS.values()
]
