"""Turn a simulated history into the JSON bodies the Parcelcast HTTP API accepts.

Used by the demo and by ingestion benchmarks: orders (``PUT /v1/orders/{id}``),
shipments (``PUT /v1/shipments/{id}``) and tracking events (``POST
/v1/tracking-events``, one event per body), in that order, with every
timestamp as ISO 8601 carrying an explicit offset ("Z").
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd

from predictor.sim_people import order_items
from predictor.simulator import SimulatedHistory

Payload = tuple[str, str, dict[str, Any]]  # (method, path, JSON body)


def to_api_payloads(history: SimulatedHistory) -> Iterator[Payload]:
    """Yield (method, path, body) for every order, shipment and tracking event."""
    orders = history.orders
    for i, row in enumerate(orders.itertuples(index=False)):
        body: dict[str, Any] = {
            "placed_at": _iso(row.placed_at),
            "customer": {"name": row.customer_name, "email": row.customer_email,
                         "phone": row.customer_phone, "locale": str(row.locale),
                         "timezone": str(row.timezone)},
            # Shoppers opt into SMS at checkout; about a third do, decided per order.
            "consent": {"email": True, "sms": i % 3 == 0},
            "items": order_items(i),
        }
        yield "PUT", f"/v1/orders/{row.order_id}", body
    for row in history.shipments.itertuples(index=False):
        body = {
            "order_id": row.order_id, "carrier": str(row.carrier),
            "service_level": str(row.service_level),
            "tracking_number": row.tracking_number,
            "origin": {"postal_code": str(row.origin_postal_code),
                       "country": str(row.origin_country)},
            "destination": {"postal_code": str(row.destination_postal_code),
                            "country": str(row.destination_country)},
            "weight_grams": int(row.weight_grams),
            "promised_delivery_date": _day(row.promised_delivery_date),
            "label_created_at": _iso(row.label_created_at),
            "shipped_at": _iso(row.shipped_at),
        }
        yield "PUT", f"/v1/shipments/{row.shipment_id}", body
    for ev in history.events.itertuples(index=False):
        yield "POST", "/v1/tracking-events", event_payload(ev._asdict())


def event_payload(ev: dict[str, Any]) -> dict[str, Any]:
    """One tracking event as the API's JSON body."""
    return {
        "carrier": _text(ev["carrier"]), "tracking_number": str(ev["tracking_number"]),
        "event_id": str(ev["event_id"]), "status": str(ev["status"]),
        "occurred_at": _iso(ev["occurred_at"]), "description": _text(ev["description"]),
        "location": {"city": _text(ev["location_city"]),
                     "region": _text(ev["location_region"]),
                     "postal_code": _text(ev["location_postal_code"]),
                     "country": _text(ev["location_country"])},
    }


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    ts = pd.Timestamp(value).tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _day(value: Any) -> str | None:
    if value is None or (not isinstance(value, date) and pd.isna(value)):
        return None
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
