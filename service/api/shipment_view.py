"""A shipment as agents see it: row, timeline, ETA window in the customer's zone."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.api.present import eta_json, shipment_json
from service.eta.reasons import agent_reasons, facts_for
from service.store import etas
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store.orders import Order
from service.store.shipments import Shipment
from service.zones import customer_zone


async def shipment_view(conn: asyncpg.Connection, row: Shipment, default_zone: str,
                        order: Order | None = None) -> dict[str, Any]:
    """The shipment's JSON; `default_zone` is the shop's (SHOP_TIMEZONE)."""
    timeline = await shipments_db.timeline(conn, row.carrier, row.tracking_number)
    first, latest = await etas.first_and_latest(conn, row.shipment_id)
    if order is None and latest is not None:
        order = await orders_db.get(conn, row.order_id)
    zone = customer_zone(order.timezone if order else None, row.destination_postal_code,
                         row.destination_country, default_zone)
    eta = eta_json(first, latest, zone)
    if eta is not None and latest is not None:
        # The predictor's sentences, reworded with the shipment's facts (service.eta.reasons).
        worded = agent_reasons(latest.reasons,
                               facts_for(row, timeline, latest.predicted_at, default_zone))
        eta["reasons"] = [{"reason": r["text"], "hours": r["hours"], "feature": r["feature"]}
                          for r in worded]
    return shipment_json(row, timeline, eta)
