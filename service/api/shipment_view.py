"""A shipment as agents see it: row, timeline, ETA window in the customer's zone."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.api.present import eta_json, shipment_json
from service.eta.runtime import customer_timezone
from service.store import etas
from service.store import orders as orders_db
from service.store import shipments as shipments_db


async def shipment_view(conn: asyncpg.Connection, row: dict[str, Any],
                        order: dict[str, Any] | None = None) -> dict[str, Any]:
    timeline = await shipments_db.timeline(conn, row["carrier"], row["tracking_number"])
    first, latest = await etas.first_and_latest(conn, row["shipment_id"])
    if order is None and latest is not None:
        order = await orders_db.get(conn, row["order_id"])
    zone = customer_timezone(order, row)
    return shipment_json(row, timeline, eta_json(first, latest, zone))
