"""`parcelcast worker`: the relay plus an arq worker, kept alive across Redis outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from arq.worker import Worker
from redis.exceptions import RedisError

from service.clock import Clock
from service.eta.runtime import EtaRuntime
from service.settings import Settings
from service.store.migrations import ensure_current
from service.store.pool import create_pool
from service.store.redis import arq_client, redis_settings
from workers.context import WorkerContext
from workers.jobs import FUNCTIONS
from workers.recalibration import recalibrate_forever
from workers.relay import Relay
from workers.render import Renderer
from workers.sending.transports import build_transports
from workers.sweeps import sweep_forever

log = logging.getLogger(__name__)


DRAIN_SECONDS = 30.0


async def _run_until_stopped(worker: Worker, stop: asyncio.Event | None,
                             background: tuple[asyncio.Task[None] | None, ...]) -> bool:
    """Run the arq worker; True when it stopped because `stop` was set (after draining)."""
    main = asyncio.create_task(worker.main())
    if stop is None:
        await main
        return False
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({main, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            main.result()
            return False
        for task in background:
            if task is not None:
                task.cancel()
        worker.allow_pick_jobs = False
        running = [t for t in worker.tasks.values() if not t.done()]
        if running:
            log.info("worker: finishing %d running job(s) before exiting", len(running))
            await asyncio.wait(running, timeout=DRAIN_SECONDS)
        for task in worker.tasks.values():
            task.cancel()  # past the drain limit: the lease and the relay recover them
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await main
        return True
    finally:
        stopping.cancel()


def build_worker(settings: Settings, ctx: dict[str, Any], *, burst: bool = False) -> Worker:
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL must be resolved before the worker starts")
    rs = redis_settings(settings.redis_url)
    rs.conn_retries = 1
    return Worker(
        functions=FUNCTIONS,  # type: ignore[arg-type]
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
    )


async def run_worker(settings: Settings, clock: Clock, *, burst: bool = False,
                     relay: bool = True, stop: asyncio.Event | None = None) -> None:
    """Run until cancelled or `stop` is set (or, with burst, until the queue is empty).

    On `stop` the worker drains: it hands off and sweeps no more, takes no new jobs, and
    lets running ones finish (up to DRAIN_SECONDS), so a deploy does not cut a send in half.
    """
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("store URLs must be resolved before the worker starts")
    pool = await create_pool(settings.database_url, max_size=20)
    relay_redis = arq_client(settings.redis_url, settings.parcelcast_queue_name)
    relay_task: asyncio.Task[None] | None = None
    sweep_task: asyncio.Task[None] | None = None
    recalibrate_task: asyncio.Task[None] | None = None
    transports = build_transports(settings)
    try:
        async with pool.acquire() as conn:
            await ensure_current(conn)
        if relay:
            relay_task = asyncio.create_task(Relay(
                pool, relay_redis, clock, stale_after=settings.parcelcast_stale_after_s
            ).run())
        if relay and settings.recalibrate_every_hours > 0:
            recalibrate_task = asyncio.create_task(recalibrate_forever(
                pool, clock, timedelta(hours=settings.recalibrate_every_hours),
                settings.sweep_interval_s))
        if relay:
            sweep_task = asyncio.create_task(
                sweep_forever(pool, clock, settings.sweep_interval_s, timedelta(
                    hours=min(settings.stalled_transit_business_hours,
                              24 * settings.stalled_label_business_days))))
        ctx = WorkerContext(pool, clock, settings, Renderer(), transports,
                            EtaRuntime(clock)).as_arq_ctx()
        while stop is None or not stop.is_set():
            worker = build_worker(settings, dict(ctx), burst=burst)
            try:
                if await _run_until_stopped(worker, stop,
                                            (relay_task, sweep_task, recalibrate_task)) or burst:
                    return
            except (RedisError, OSError) as exc:
                log.warning("worker: Redis unavailable (%s); reconnecting in 1s", exc)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                    await worker.close()
    finally:
        for task in (relay_task, sweep_task, recalibrate_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await transports.aclose()
        await relay_redis.aclose()
        await pool.close()
