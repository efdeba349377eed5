"""What the customer's tracking page reads, in one round trip: the shipment, its order, its
scans and the order's other shipments (as JSON, decoded straight into the typed rows)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import msgspec

from service.store.orders import COLUMNS as ORDER_COLUMNS
from service.store.orders import Order
from service.store.shipments import COLUMNS as SHIPMENT_COLUMNS
from service.store.shipments import TIMELINE_COLUMNS, Shipment, TimelineEvent

MAX_SIBLINGS = 20

READ = f"""
SELECT row_to_json(s)::text AS shipment,
       (SELECT row_to_json(o) FROM (SELECT {ORDER_COLUMNS} FROM orders
                                    WHERE order_id = s.order_id) o)::text AS "order",
       (SELECT coalesce(json_agg(e ORDER BY e.occurred_at, e.id), '[]')
        FROM (SELECT {TIMELINE_COLUMNS} FROM tracking_events
              WHERE carrier = s.carrier AND tracking_number = s.tracking_number) e)::text
           AS timeline,
       (SELECT json_agg(x ORDER BY x.created_at, x.shipment_id)
        FROM (SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE order_id = s.order_id
              ORDER BY created_at, shipment_id LIMIT {MAX_SIBLINGS}) x)::text AS siblings
FROM (SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE shipment_id = $1) s
"""

_shipment = msgspec.json.Decoder(Shipment)
_order = msgspec.json.Decoder(Order | None)
_timeline = msgspec.json.Decoder(list[TimelineEvent])
_siblings = msgspec.json.Decoder(list[Shipment])


@dataclass(frozen=True)
class PageRows:
    shipment: Shipment
    order: Order | None
    timeline: list[TimelineEvent]  # oldest first
    siblings: list[Shipment]  # the order's shipments, this one included, oldest first


async def read(conn: asyncpg.Connection, shipment_id: str) -> PageRows | None:
    row = await conn.fetchrow(READ, shipment_id)
    if row is None:
        return None
    return PageRows(_shipment.decode(row["shipment"]),
                    _order.decode(row["order"]) if row["order"] else None,
                    _timeline.decode(row["timeline"]), _siblings.decode(row["siblings"]))
