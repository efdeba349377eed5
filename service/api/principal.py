"""Who is asking: an API key (its public id and scopes), or an agent behind a trusted proxy."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service.api.keys import key_cache_key, pool_key
from service.security.api_keys import allows, hash_key, key_id_of
from service.store import api_keys


@dataclass(frozen=True)
class Principal:
    """`actor` is an API key's public id (or `proxy:<user>` on the support page behind a
    trusted proxy): what audit logs record as "who"."""

    actor: str
    scopes: tuple[str, ...]

    def may(self, scope: str) -> bool:
        return allows(list(self.scopes), scope)


principal_key = web.RequestKey("principal", Principal)


async def key_principal(request: web.Request, token: str) -> Principal | None:
    """The principal of a live API key, or None for an unknown or revoked one."""
    key_hash = hash_key(token)
    cache = request.app[key_cache_key]
    scopes = cache.get(key_hash)
    if scopes is None:
        async with request.app[pool_key].acquire() as conn:
            scopes = await api_keys.scopes_for(conn, key_hash)
        if scopes is None:
            return None
        cache.put(key_hash, scopes)
    return Principal(key_id_of(token), tuple(scopes))


def principal(request: web.Request) -> Principal:
    """The principal a guarded handler runs for (set by service.api.guard.protect)."""
    return request[principal_key]
