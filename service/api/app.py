"""The app factory (no I/O) and the resources it owns, each in a cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from service.api.guard import protect
from service.api.keys import (
    clock_key,
    coalescer_key,
    eta_key,
    key_cache_key,
    metrics_key,
    pool_key,
    quality_key,
    redis_key,
    settings_key,
)
from service.api.metrics import Metrics
from service.api.middlewares import errors_middleware, metrics_middleware
from service.api.routes import ROUTES
from service.clock import Clock
from service.eta.runtime import EtaRuntime
from service.memory import give_back_forever
from service.security.api_keys import KeyCache
from service.settings import Settings
from service.store.migrations import ensure_current
from service.store.pool import create_pool as create_pg_pool
from service.store.quality import QualityBuffer
from service.store.redis import arq_client
from service.tracking.coalescer import IngestCoalescer
from service.zones import warm as warm_tables

log = logging.getLogger(__name__)


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL must be resolved before the app starts")
    pool = await create_pg_pool(settings.database_url, max_size=settings.database_pool_size,
                                application_name="parcelcast-api")
    try:
        async with pool.acquire() as conn:
            await ensure_current(conn)
        app[pool_key] = pool
        app[coalescer_key] = IngestCoalescer(pool, app[clock_key])
        quality = app[quality_key] = QualityBuffer(pool)
        flusher = asyncio.create_task(quality.run())
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            try:
                await quality.flush()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("data-quality counters lost at shutdown: %s", exc)
    finally:
        await pool.close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    if settings.redis_url is None:
        raise RuntimeError("REDIS_URL must be resolved before the app starts")
    # Ingestion never needs Redis (the outbox does), so a Redis that is down at
    # start-up only makes /readyz say so.
    redis = arq_client(settings.redis_url, settings.parcelcast_queue_name)
    app[redis_key] = redis
    yield
    await redis.aclose()


async def _memory(app: web.Application) -> AsyncIterator[None]:
    """Freed memory handed back to the system every half minute (service/memory.py)."""
    trimming = asyncio.create_task(give_back_forever())
    yield
    trimming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await trimming


async def _tables(_: web.Application) -> None:
    """The ZIP tables built before the first request (service.zones.warm)."""
    await asyncio.to_thread(warm_tables)


def create_app(settings: Settings, clock: Clock) -> web.Application:
    """Build the app; resources open when it starts. Needs resolved store URLs."""
    app = web.Application(
        middlewares=[metrics_middleware, errors_middleware],
        client_max_size=settings.parcelcast_max_body_bytes,
    )
    app[settings_key] = settings
    app[clock_key] = clock
    app[metrics_key] = Metrics()
    app[key_cache_key] = KeyCache()
    app[eta_key] = EtaRuntime(clock)
    app.cleanup_ctx.extend([_postgres, _redis, _memory])
    app.on_startup.append(_tables)
    for route in ROUTES:
        handler = protect(route.handler, route.scope) if route.scope else route.handler
        app.router.add_route(route.method, route.path, handler, name=None)
    return app

