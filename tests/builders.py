"""Request bodies as the OMS and carriers send them."""

from __future__ import annotations

from typing import Any


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
