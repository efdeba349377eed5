"""Orders: the OMS's upserts and the agent's reads."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.inputs import OrderIn, dump


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """An order as stored."""

    order_id: str
    placed_at: datetime | None
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    locale: str
    timezone: str | None
    email_consent: bool
    sms_consent: bool
    items: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


COLUMNS = ", ".join(Order.__struct_fields__)

UPSERT = """
INSERT INTO orders (order_id, placed_at, customer_name, customer_email, customer_phone, locale,
                    timezone, email_consent, sms_consent, items, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
ON CONFLICT (order_id) DO UPDATE SET
    placed_at = EXCLUDED.placed_at, customer_name = EXCLUDED.customer_name,
    customer_email = EXCLUDED.customer_email, customer_phone = EXCLUDED.customer_phone,
    locale = EXCLUDED.locale, timezone = EXCLUDED.timezone,
    email_consent = EXCLUDED.email_consent, sms_consent = EXCLUDED.sms_consent,
    items = EXCLUDED.items, updated_at = EXCLUDED.updated_at
RETURNING (xmax = 0) AS created
"""


# A sender's partial view of an order (webhooks): see shipments.MERGE. A new row is
# inserted whole; a stored one changes only in the stated columns ($12), and only if not
# written since $13.
MERGE_COLUMNS = {
    "placed_at": "placed_at", "customer.name": "customer_name",
    "customer.email": "customer_email", "customer.phone": "customer_phone",
    "customer.locale": "locale", "customer.timezone": "timezone",
    "consent.email": "email_consent", "consent.sms": "sms_consent", "items": "items",
}
MERGE = UPSERT.split("ON CONFLICT")[0].replace(
    "created_at, updated_at)", "created_at, updated_at, source_updated_at)").replace(
    "$11, $11)", "$11, $11, $14)") + "ON CONFLICT (order_id) DO UPDATE SET\n" + "".join(
    f"    {column} = CASE WHEN '{column}' = ANY($12::text[]) THEN EXCLUDED.{column} "
    f"ELSE orders.{column} END,\n" for column in MERGE_COLUMNS.values()
) + """    updated_at = EXCLUDED.updated_at,
    source_updated_at = greatest(orders.source_updated_at, EXCLUDED.source_updated_at)
WHERE ($13::timestamptz IS NULL OR orders.updated_at <= $13::timestamptz)
  -- The sender's version time ($14): an older orders/updated delivered late changes nothing.
  AND ($14::timestamptz IS NULL OR orders.source_updated_at IS NULL
       OR orders.source_updated_at <= $14::timestamptz)
RETURNING (xmax = 0) AS created
"""


async def merge(conn: asyncpg.Connection, order_id: str, order: OrderIn, carried: Iterable[str],
                now: datetime, not_after: datetime | None = None,
                version: datetime | None = None) -> bool | None:
    """A sender's view of an order: True when new, False when updated, None when the stored
    row changed after `not_after`, or holds a newer `version` (the sender's updated_at), and
    was left as it is."""
    customer = order.customer
    created: bool | None = await conn.fetchval(
        MERGE, order_id, order.placed_at, customer.name, customer.email, customer.phone,
        customer.locale, customer.timezone, order.consent.email, order.consent.sms,
        [dump(item) for item in order.items], now,
        sorted(MERGE_COLUMNS[name] for name in carried), not_after, version,
    )
    return created


async def upsert(conn: asyncpg.Connection, order_id: str, order: OrderIn, now: datetime) -> bool:
    """Insert or replace the order; True when it was new."""
    customer = order.customer
    created: bool = await conn.fetchval(
        UPSERT, order_id, order.placed_at, customer.name, customer.email, customer.phone,
        customer.locale, customer.timezone, order.consent.email, order.consent.sms,
        [dump(item) for item in order.items], now,
    )
    return created


async def get(conn: asyncpg.Connection, order_id: str) -> Order | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM orders WHERE order_id = $1", order_id)
    return Order(**row) if row else None
