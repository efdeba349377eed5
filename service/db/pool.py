"""The asyncpg pool and its codecs."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def create_pool(database_url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections speak JSON through orjson and run in UTC."""
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init,
        server_settings={"timezone": "UTC", "application_name": "parcelcast"},
    )
    if pool is None:
        raise RuntimeError("asyncpg.create_pool returned no pool")
    return pool


async def connect(database_url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(database_url, server_settings={"timezone": "UTC"})
    await _init(conn)
    return conn
