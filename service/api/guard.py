"""Wrapping handlers so they demand an API key with a scope."""

from __future__ import annotations

import functools

from aiohttp import web

from service.api.keys import key_cache_key, pool_key
from service.api.routes import Handler
from service.errors import ProblemError
from service.security.api_keys import allows, bearer_token, hash_key
from service.store import api_keys

_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="parcelcast"'}


async def granted_scopes(request: web.Request) -> list[str]:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise ProblemError(401, "Unauthorized", "send an API key: Authorization: Bearer pc_...",
                           headers=_UNAUTHORIZED)
    key_hash = hash_key(token)
    cache = request.app[key_cache_key]
    scopes = cache.get(key_hash)
    if scopes is None:
        async with request.app[pool_key].acquire() as conn:
            scopes = await api_keys.scopes_for(conn, key_hash)
        if scopes is None:
            raise ProblemError(401, "Unauthorized", "unknown or revoked API key",
                               headers=_UNAUTHORIZED)
        cache.put(key_hash, scopes)
    return scopes


def protect(handler: Handler, scope: str) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not allows(await granted_scopes(request), scope):
            raise ProblemError(403, "Forbidden", f"this API key lacks the {scope!r} scope")
        return await handler(request)

    return guarded
