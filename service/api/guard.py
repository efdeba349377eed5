"""Wrapping handlers so they demand an API key with a scope."""

from __future__ import annotations

import functools

from aiohttp import web

from service.api.principal import key_principal, principal_key
from service.api.routes import Handler
from service.errors import ProblemError
from service.security.api_keys import allows, bearer_token

_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="parcelcast"'}


async def granted_scopes(request: web.Request) -> list[str]:
    """The scopes of the request's bearer key (401 without a live one); the key's principal
    is kept on the request for audit logs."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise ProblemError(401, "Unauthorized", "send an API key: Authorization: Bearer pc_...",
                           headers=_UNAUTHORIZED)
    found = await key_principal(request, token)
    if found is None:
        raise ProblemError(401, "Unauthorized", "unknown or revoked API key",
                           headers=_UNAUTHORIZED)
    request[principal_key] = found
    return list(found.scopes)


def protect(handler: Handler, scope: str) -> Handler:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not allows(await granted_scopes(request), scope):
            raise ProblemError(403, "Forbidden", f"this API key lacks the {scope!r} scope")
        return await handler(request)

    return guarded
