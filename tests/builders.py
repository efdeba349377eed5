"""Request bodies as the OMS and carriers send them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from service.store.shipments import Shipment


def order(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "placed_at": "2026-11-01T18:30:00Z",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155552671",
                     "locale": "en", "timezone": "America/Los_Angeles"},
        "consent": {"email": True, "sms": True},
        "items": [{"sku": "MUG-1", "name": "Enamel mug", "quantity": 2}],
    }
    body.update(overrides)
    return body


def shipment(order_id: str = "o-1", tracking_number: str = "1Z0001", **overrides: Any
             ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id, "carrier": "ups", "service_level": "ground",
        "tracking_number": tracking_number,
        "origin": {"postal_code": "10001", "country": "US"},
        "destination": {"postal_code": "94105", "country": "US"},
        "weight_grams": 850, "promised_delivery_date": "2026-11-06",
        "label_created_at": "2026-11-02T09:00:00Z",
    }
    body.update(overrides)
    return body


def event(status: str, occurred_at: str, tracking_number: str = "1Z0001", **overrides: Any
          ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "carrier": "ups", "tracking_number": tracking_number, "status": status,
        "occurred_at": occurred_at,
        "location": {"city": "Oakland", "region": "CA", "postal_code": "94607", "country": "US"},
    }
    body.update(overrides)
    return body


def stored_shipment(**overrides: Any) -> Shipment:
    """A shipment as the store returns it (for planner and trigger tests without a database)."""
    label = datetime(2026, 11, 2, 9, tzinfo=UTC)
    fields: dict[str, Any] = {
        "shipment_id": "s-1", "order_id": "o-1", "carrier": "ups", "service_level": "ground",
        "tracking_number": "1Z0001", "origin_postal_code": "10001", "origin_country": "US",
        "destination_postal_code": "94105", "destination_country": "US", "weight_grams": 850,
        "promised_delivery_date": date(2026, 11, 6), "label_created_at": label,
        "shipped_at": None, "status": "label_created", "status_rank": 1,
        "status_occurred_at": None, "delivered_at": None, "event_count": 0,
        "last_event_at": None, "first_scan_at": None, "derived_at": None, "created_at": label,
        "updated_at": label, "eta_id": None, "eta_p10": None, "eta_p50": None, "eta_p90": None,
        "shown_date": None, "pending_date": None, "carrier_estimated_delivery": None,
        "carrier_estimate_source": None, "carrier_estimate_as_of": None,
    }
    fields.update(overrides)
    return Shipment(**fields)
