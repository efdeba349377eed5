"""What support agents did: the audit log per order, muted orders, shipments declared lost."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec


class SupportAction(msgspec.Struct, frozen=True, kw_only=True):
    """One audit-log entry: who (`actor`: an API key id or proxy:<user>), when, what, why."""

    id: int
    order_id: str
    shipment_id: str | None
    notification_id: int | None
    action: str
    actor: str
    note: str
    detail: dict[str, Any]
    created_at: datetime


class Mute(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    muted_at: datetime
    actor: str
    note: str


COLUMNS = ", ".join(SupportAction.__struct_fields__)
MUTE_COLUMNS = ", ".join(Mute.__struct_fields__)


async def record(conn: asyncpg.Connection, *, order_id: str, action: str, actor: str,
                 note: str, now: datetime, shipment_id: str | None = None,
                 notification_id: int | None = None, detail: dict[str, Any] | None = None
                 ) -> SupportAction:
    """Append one entry (in the caller's transaction, beside the change it records)."""
    row = await conn.fetchrow(
        f"""INSERT INTO support_actions (order_id, shipment_id, notification_id, action, actor,
                                         note, detail, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}""",
        order_id, shipment_id, notification_id, action, actor, note, detail or {}, now)
    return SupportAction(**row)


async def for_order(conn: asyncpg.Connection, order_id: str, limit: int = 200
                    ) -> list[SupportAction]:
    """An order's audit log, newest first."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM support_actions WHERE order_id = $1
            ORDER BY created_at DESC, id DESC LIMIT $2""", order_id, limit)
    return [SupportAction(**r) for r in rows]


async def mute(conn: asyncpg.Connection, order_id: str, actor: str, note: str, now: datetime
               ) -> bool:
    """Mute an order; False when it already was."""
    created: bool | None = await conn.fetchval(
        """INSERT INTO order_mutes (order_id, muted_at, actor, note) VALUES ($1, $2, $3, $4)
           ON CONFLICT (order_id) DO NOTHING RETURNING true""", order_id, now, actor, note)
    return bool(created)


async def unmute(conn: asyncpg.Connection, order_id: str) -> bool:
    result: str = await conn.execute("DELETE FROM order_mutes WHERE order_id = $1", order_id)
    return result.endswith(" 1")


async def mute_of(conn: asyncpg.Connection, order_id: str) -> Mute | None:
    row = await conn.fetchrow(f"SELECT {MUTE_COLUMNS} FROM order_mutes WHERE order_id = $1",
                              order_id)
    return Mute(**row) if row else None


async def mark_lost(conn: asyncpg.Connection, shipment_id: str, now: datetime) -> bool:
    """Declare a shipment lost (its ETA, sweeps and messages stop); False if it already was."""
    result: str = await conn.execute(
        "UPDATE shipments SET lost_at = $2 WHERE shipment_id = $1 AND lost_at IS NULL",
        shipment_id, now)
    return result.endswith(" 1")
