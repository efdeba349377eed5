"""A worker's own small HTTP endpoint: GET /healthz (its loops) and GET /metrics.

Off unless WORKER_HEALTH_PORT is set. /healthz answers 200 while every supervised loop is
up or has been down for at most WORKER_DOWN_AFTER_S, else 503, with each loop's state
(up, down_for_s, restarts, last_error) in the body; `parcelcast worker --health` asks it.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from workers.supervisor import Supervisor

SUPERVISOR = web.AppKey("supervisor", Supervisor)
REGISTRY = web.AppKey("registry", CollectorRegistry)
DOWN_AFTER = web.AppKey("down_after", float)


async def healthz(request: web.Request) -> web.Response:
    health = request.app[SUPERVISOR].health(request.app[DOWN_AFTER])
    return web.json_response(health.as_dict(), status=200 if health.ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(supervisor: Supervisor, registry: CollectorRegistry,
               down_after: float) -> web.Application:
    app = web.Application()
    app[SUPERVISOR] = supervisor
    app[REGISTRY] = registry
    app[DOWN_AFTER] = down_after
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(supervisor: Supervisor, registry: CollectorRegistry, host: str, port: int,
                down_after: float) -> web.AppRunner:
    """Start the endpoint; the caller cleans the runner up."""
    runner = web.AppRunner(create_app(supervisor, registry, down_after), access_log=None,
                           handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def ask(host: str, port: int, within: float = 5.0) -> tuple[int, dict[str, Any]]:
    """A running worker's answer to GET /healthz: (status, body)."""
    client_timeout = aiohttp.ClientTimeout(total=within)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.get(f"http://{host}:{port}/healthz") as answer:
        return answer.status, json.loads(await answer.read())
