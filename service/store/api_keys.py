"""API keys: stored as a sha256 of the whole key, never the key itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as listed: never its secret or hash."""

    key_id: str
    scopes: list[str]
    name: str
    created_at: datetime
    revoked_at: datetime | None


async def create(
    conn: asyncpg.Connection, key_id: str, key_hash: bytes, scopes: Sequence[str], name: str,
    now: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO api_keys (key_id, key_hash, scopes, name, created_at) VALUES ($1,$2,$3,$4,$5)",
        key_id, key_hash, list(scopes), name, now,
    )


async def scopes_for(conn: asyncpg.Connection, key_hash: bytes) -> list[str] | None:
    """The scopes of a live key, or None for an unknown or revoked one."""
    scopes: list[str] | None = await conn.fetchval(
        "SELECT scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
    return scopes


async def revoke(conn: asyncpg.Connection, key_id: str, now: datetime) -> bool:
    result: str = await conn.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL", key_id, now
    )
    return result.endswith(" 1")


async def list_all(conn: asyncpg.Connection) -> list[ApiKey]:
    rows = await conn.fetch(
        "SELECT key_id, scopes, name, created_at, revoked_at FROM api_keys ORDER BY created_at"
    )
    return [ApiKey(**r) for r in rows]
