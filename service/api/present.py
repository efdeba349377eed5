"""How stored rows look in API responses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.store.etas import EtaRecord
from service.store.orders import Order
from service.store.shipments import Shipment, TimelineEvent
from service.tracking.carrier_codes import carrier_name


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


def event_json(row: TimelineEvent) -> dict[str, Any]:
    return {
        "status": row.status,
        "raw_code": row.raw_code,
        "description": row.description,
        "location": row.location,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "event_id": row.carrier_event_id,
        "substatus": row.substatus,
    }


def _local(instant: datetime | None, zone: str) -> str | None:
    return instant.astimezone(ZoneInfo(zone)).date().isoformat() if instant else None


def eta_json(first: EtaRecord | None, latest: EtaRecord | None,
             zone: str) -> dict[str, Any] | None:
    """The latest window (UTC and the customer's local dates) and the first one shown."""
    if latest is None:
        return None
    return {
        "earliest": iso(latest.eta_p10), "likely": iso(latest.eta_p50),
        "latest": iso(latest.eta_p90),
        "local": {"timezone": zone, "earliest": _local(latest.eta_p10, zone),
                  "likely": _local(latest.eta_p50, zone),
                  "latest": _local(latest.eta_p90, zone)},
        "probability_late": latest.prob_late,
        "model_version": latest.model_version,
        "predicted_at": iso(latest.predicted_at),
        "stage": latest.stage,
        "reasons": latest.reasons,
        "first_shown": None if first is None else {
            "earliest": iso(first.eta_p10), "likely": iso(first.eta_p50),
            "latest": iso(first.eta_p90), "predicted_at": iso(first.predicted_at),
            "model_version": first.model_version},
    }


def shipment_json(row: Shipment, timeline: list[TimelineEvent],
                  eta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "shipment_id": row.shipment_id,
        "order_id": row.order_id,
        "carrier": row.carrier,
        "carrier_name": carrier_name(row.carrier),
        "service_level": row.service_level,
        "tracking_number": row.tracking_number,
        "origin": {"postal_code": row.origin_postal_code, "country": row.origin_country},
        "destination": {
            "postal_code": row.destination_postal_code, "country": row.destination_country,
        },
        "weight_grams": row.weight_grams,
        "promised_delivery_date": iso(row.promised_delivery_date),
        "label_created_at": iso(row.label_created_at),
        "shipped_at": iso(row.shipped_at),
        "status": row.status,
        "substatus": row.substatus,
        "status_at": iso(row.status_occurred_at),
        "delivered_at": iso(row.delivered_at),
        "event_count": row.event_count,
        "last_event_at": iso(row.last_event_at),
        "carrier_estimate": (
            {"date": iso(row.carrier_estimated_delivery),
             "source": row.carrier_estimate_source}
            if row.carrier_estimated_delivery else None),
        "eta": eta,
        "timeline": [event_json(e) for e in timeline],
        "updated_at": iso(row.updated_at),
    }


def order_json(row: Order, shipments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "order_id": row.order_id,
        "placed_at": iso(row.placed_at),
        "customer": {
            "name": row.customer_name, "email": row.customer_email,
            "phone": row.customer_phone, "locale": row.locale, "timezone": row.timezone,
        },
        "consent": {"email": row.email_consent, "sms": row.sms_consent},
        "items": row.items,
        "shipments": shipments,
        "updated_at": iso(row.updated_at),
    }
