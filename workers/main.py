"""`parcelcast worker`: the arq worker, the relay, the sweep, the recalibration, the
monitoring (live accuracy, drift) and the maintenance (event partitions), each a loop
under one supervisor (workers.supervisor), so that Redis and PostgreSQL outages delay work
and never stop it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from functools import partial
from typing import Any

import asyncpg
from aiohttp import web
from arq.worker import Worker

from predictor.calendar import busday_calendar
from service.clock import Clock
from service.eta.runtime import EtaRuntime
from service.memory import give_back_forever, settle_collector, watch_allocations_forever
from service.settings import Settings
from service.store.migrations import ensure_current
from service.store.pool import create_pool
from service.store.redis import arq_client, redis_settings
from service.store.transient import is_outage
from service.zones import warm as warm_tables
from workers import health
from workers.context import WorkerContext
from workers.jobs import FUNCTIONS
from workers.maintenance import maintain_forever, vacuum_forever
from workers.metrics import WorkerMetrics
from workers.monitoring import watch_forever
from workers.recalibration import recalibrate_forever
from workers.relay import Relay
from workers.render import Renderer
from workers.retraining import cron_jobs
from workers.senders.twilio_sms import warm as warm_twilio
from workers.sending.transports import build_transports
from workers.supervisor import MAX_DELAY, Beat, Recover, Supervisor
from workers.sweeps import sweep_forever

log = logging.getLogger(__name__)


DRAIN_SECONDS = 30.0
ARQ = "arq"


def build_worker(settings: Settings, ctx: dict[str, Any], *, burst: bool = False,
                 on_startup: Any = None) -> Worker:
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL must be resolved before the worker starts")
    rs = redis_settings(settings.redis_url)
    rs.conn_retries = 1
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=cron_jobs(settings) or None,
        redis_settings=rs,
        queue_name=settings.parcelcast_queue_name,
        ctx=ctx,
        burst=burst,
        # Jobs are batches already; more at once would only queue on locks and the pool.
        max_jobs=8,
        job_timeout=120,
        keep_result=60,
        max_tries=10,
        poll_delay=0.05,
        handle_signals=False,
        on_startup=on_startup,
    )


class ArqLoop:
    """The arq worker as a supervised loop: each start builds a fresh Worker, with a fresh
    Redis connection, and it is up once that connection works."""

    def __init__(self, settings: Settings, ctx: dict[str, Any]) -> None:
        self.settings = settings
        self.ctx = ctx
        self.worker: Worker | None = None

    async def run(self, beat: Beat) -> None:
        async def started(_ctx: dict[str, Any]) -> None:
            beat()

        worker = build_worker(self.settings, dict(self.ctx), on_startup=started)
        self.worker = worker
        try:
            await worker.main()
        finally:
            self.worker = None
            await _close(worker)

    async def drain(self, within: float) -> None:
        """Take no new jobs and let running ones finish (up to `within` seconds)."""
        worker = self.worker
        if worker is None:
            return
        worker.allow_pick_jobs = False
        running = [t for t in worker.tasks.values() if not t.done()]
        if running:
            log.info("worker: finishing %d running job(s) before exiting", len(running))
            await asyncio.wait(running, timeout=within)


async def _close(worker: Worker) -> None:
    """Close an arq worker whatever state its Redis connection is in. Jobs still running are
    cancelled: their work items are handed over again (leases and the relay's staleness)."""
    tasks = list(worker.tasks.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    worker.tasks.clear()
    with contextlib.suppress(Exception):
        await worker.close()
    if worker._pool is not None:  # close() stopped half-way (Redis is down)
        with contextlib.suppress(Exception):
            await worker._pool.close(close_connection_pool=True)


def warm_process() -> None:
    """Build at start, in a thread, what the first refresh and the first SMS would otherwise
    build in a job (seconds of CPU on a busy machine, in a job that should take
    milliseconds): the ZIP tables, the carriers' business-day calendar (the holidays package
    imports its countries on first use), Twilio's message classes."""
    warm_tables()
    busday_calendar("US")
    warm_twilio()


def reconnecting(pool: asyncpg.Pool) -> Recover:
    """The recovery of a loop that uses `pool`: after an outage, fresh connections."""

    async def recover(exc: BaseException) -> None:
        if is_outage(exc):
            await pool.expire_connections()

    return recover


async def run_worker(settings: Settings, clock: Clock, *, burst: bool = False,
                     relay: bool = True, stop: asyncio.Event | None = None) -> None:
    """Run until cancelled or `stop` is set (or, with burst, until the queue is empty).

    On `stop` the worker drains: it hands off and sweeps no more, takes no new jobs, and
    lets running ones finish (up to DRAIN_SECONDS), so a deploy does not cut a send in half.
    """
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("store URLs must be resolved before the worker starts")
    pool = await create_pool(settings.database_url, max_size=settings.worker_database_pool_size,
                             application_name="parcelcast-worker")
    relay_redis = arq_client(settings.redis_url, settings.parcelcast_queue_name)
    transports = build_transports(settings)
    metrics = WorkerMetrics()
    supervisor = Supervisor(metrics.loops)
    endpoint: web.AppRunner | None = None
    try:
        async with pool.acquire() as conn:
            await ensure_current(conn)
        runtime = EtaRuntime(clock)
        renderer = Renderer()
        if not burst:  # a long-running worker (a burst drains a queue: tests, one-offs)
            await asyncio.to_thread(renderer.warm)  # every template compiled before any send
            await asyncio.to_thread(warm_process)  # what the first jobs would build
            settle_collector()  # after everything the process builds once (service/memory.py)
        ctx = WorkerContext(pool, clock, settings, renderer, transports, runtime,
                            metrics).as_arq_ctx()
        if burst:
            worker = build_worker(settings, dict(ctx), burst=True)
            try:
                await worker.main()
            finally:
                await _close(worker)
            return
        if relay:
            _add_background_loops(supervisor, settings, clock, pool, relay_redis, metrics,
                                  runtime)
        arq = ArqLoop(settings, ctx)
        supervisor.add(ARQ, arq.run)
        supervisor.add("memory", give_back_forever)
        if settings.parcelcast_memory_diagnostic_s is not None:
            supervisor.add("memory.diagnostic", partial(
                watch_allocations_forever, every_s=settings.parcelcast_memory_diagnostic_s))
        supervisor.start()
        if settings.worker_health_port is not None:
            endpoint = await health.serve(supervisor, metrics.registry,
                                          settings.worker_health_host,
                                          settings.worker_health_port,
                                          settings.worker_down_after_s)
        await (stop or asyncio.Event()).wait()
        await supervisor.stop([name for name in supervisor.status() if name != ARQ])
        await arq.drain(DRAIN_SECONDS)
    finally:
        await supervisor.stop()
        if endpoint is not None:
            await endpoint.cleanup()
        await transports.aclose()
        await relay_redis.aclose()
        await pool.close()


def _add_background_loops(supervisor: Supervisor, settings: Settings, clock: Clock,
                          pool: asyncpg.Pool, redis: Any, metrics: WorkerMetrics,
                          runtime: EtaRuntime) -> None:
    recover = reconnecting(pool)
    relay = Relay(pool, redis, clock, stale_after=settings.parcelcast_stale_after_s,
                  metrics=metrics)
    supervisor.add("relay.listen", relay.listen_forever, recover=recover)
    supervisor.add("relay.handoff", relay.handoff_forever, recover=recover)
    stalled_after = timedelta(hours=min(settings.stalled_transit_business_hours,
                                        24 * settings.stalled_label_business_days))
    supervisor.add("sweep", partial(sweep_forever, pool, clock, settings.sweep_interval_s,
                                    stalled_after), recover=recover)
    # Tracking events' partitions ahead of time, expired ones dropped (cheap when nothing is
    # due; a lock not had within its timeout waits for the restart).
    supervisor.add("maintenance", partial(maintain_forever, pool, clock, settings),
                   recover=recover, max_delay=max(MAX_DELAY, settings.sweep_interval_s))
    # Autovacuum's work, when the server's autovacuum is off (service.store.vacuum).
    supervisor.add("vacuum", partial(vacuum_forever, pool), recover=recover)
    if settings.recalibrate_every_hours > 0:
        # Seconds of CPU in a process when it runs: a failure waits for the next check.
        supervisor.add("recalibration", partial(
            recalibrate_forever, pool, clock, timedelta(hours=settings.recalibrate_every_hours),
            settings.sweep_interval_s, runtime.expire), recover=recover,
            max_delay=max(MAX_DELAY, settings.sweep_interval_s))
    # Live-accuracy gauges, and a drift check when due (a process of CPU when it runs).
    supervisor.add("monitoring", partial(watch_forever, pool, clock, settings, metrics),
                   recover=recover, max_delay=max(MAX_DELAY, settings.accuracy_poll_s))
