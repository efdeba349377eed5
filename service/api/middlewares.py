"""The error middleware (one JSON error shape for everything) and request metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from service.api.keys import metrics_key, settings_key
from service.errors import ProblemError
from service.store.pool import STORE_UNAVAILABLE

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(problem: ProblemError, request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps(problem.body(request.path)), status=problem.status,
        content_type="application/problem+json", headers=problem.headers,
    )


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ProblemError:
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 413:
        detail = f"request body is larger than {request.app[settings_key].parcelcast_max_body_bytes} bytes"
    elif exc.status == 404:
        detail = f"no such resource: {request.path}"
    elif exc.status == 405:
        detail = f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', '')}"
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return ProblemError(exc.status, exc.reason, detail, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as problem:
        return problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(_from_http_exception(exc, request), request)
    except STORE_UNAVAILABLE as exc:
        log.warning("store unavailable in %s %s: %s: %s", request.method, request.path,
                    type(exc).__name__, exc)
        return problem_response(ProblemError(
            503, "Service unavailable", "a data store is unreachable; nothing was written",
            headers={"Retry-After": "5"}), request)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(
            ProblemError(500, "Internal server error", "the error was logged"), request
        )


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics = request.app[metrics_key]
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(route).observe(time.perf_counter() - started)
    return response
