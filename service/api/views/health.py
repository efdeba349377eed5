"""GET /healthz, /readyz, /metrics and /openapi.json."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.keys import clock_key, metrics_key, pool_key, redis_key, settings_key
from service.api.responses import json_response
from service.errors import FieldError, ProblemError
from service.store import quality as quality_db
from service.store import work as work_db

CHECK_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _check_postgres(app: web.Application) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), app[pool_key].acquire() as conn:
            await conn.fetchval("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
        return f"error: {type(exc).__name__}: {exc}"


async def _check_redis(app: web.Application) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await app[redis_key].ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}: {exc}"


async def readyz(request: web.Request) -> web.Response:
    postgres, redis = await asyncio.gather(
        _check_postgres(request.app), _check_redis(request.app)
    )
    ready = postgres == "ok" and redis == "ok"
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": {"postgres": postgres, "redis": redis}},
        200 if ready else 503,
    )


def _metrics_allowed(request: web.Request) -> None:
    """With METRICS_BIND set, /metrics exists only on that address; with METRICS_TOKEN set,
    a scrape must bring it as a bearer token."""
    settings = request.app[settings_key]
    address = settings.metrics_address
    if address is not None:
        local = request.transport.get_extra_info("sockname") if request.transport else None
        if not local or int(local[1]) != address[1]:
            raise web.HTTPNotFound()
    token = settings.metrics_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(errors="surrogateescape"), token.encode()):
        raise ProblemError(401, "Unauthorized", "send the metrics token: Authorization: Bearer "
                           "<METRICS_TOKEN>", [FieldError("Authorization", "missing or wrong "
                                                          "metrics token", "unauthorized")],
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


async def metrics(request: web.Request) -> web.Response:
    _metrics_allowed(request)
    app = request.app
    gauges = app[metrics_key]
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), app[pool_key].acquire() as conn:
            for state, count in (await work_db.depth(conn)).items():
                gauges.work_depth.labels(state).set(count)
            gauges.feed_quality.counted = await quality_db.totals(conn)
            gauges.feed_quality.stale = await quality_db.stale_trackers(
                conn, app[clock_key].now(), app[settings_key].data_quality_stale_days)
    except Exception:  # noqa: BLE001 - a scrape must not fail because one source is down
        pass
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            depth = await app[redis_key].zcard(app[settings_key].parcelcast_queue_name)
        gauges.queue_depth.set(depth)
    except Exception:  # noqa: BLE001
        gauges.queue_depth.set(-1)
    body = generate_latest(gauges.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from service.api.openapi import document

    return json_response(document())
