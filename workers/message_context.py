"""What a template is told about a notification: built from the stored order and shipment."""

from __future__ import annotations

from typing import Any

from predictor.lanes import zip_timezone
from service.settings import Settings
from service.taxonomy import CARRIERS
from service.tokens import tracking_url, unsubscribe_url


def customer_timezone(order: dict[str, Any] | None, shipment: dict[str, Any]) -> str:
    """The customer's own zone, else the destination's, else UTC."""
    if order and order.get("timezone"):
        return str(order["timezone"])
    postal, country = shipment.get("destination_postal_code"), shipment.get("destination_country")
    if postal and (country or "US") == "US":
        return zip_timezone(postal, "US")
    return "UTC"


def render_context(settings: Settings, notification: dict[str, Any], order: dict[str, Any] | None,
                   shipment: dict[str, Any], last_event: dict[str, Any] | None) -> dict[str, Any]:
    base = str(settings.public_base_url)
    secret = settings.parcelcast_secret_key
    location = None
    if last_event and last_event.get("location"):
        loc = last_event["location"]
        location = ", ".join(str(loc[k]) for k in ("city", "region") if loc.get(k)) or None
    return {
        "order_id": shipment["order_id"],
        "shop_name": settings.shop_name,
        "carrier_name": CARRIERS.get(shipment["carrier"], shipment["carrier"]),
        "tracking_number": shipment["tracking_number"],
        "tracking_url": tracking_url(base, secret, shipment["shipment_id"]),
        "unsubscribe_url": unsubscribe_url(base, secret, notification["channel"],
                                           notification["recipient"]),
        "customer_name": order.get("customer_name") if order else None,
        "status": shipment["status"],
        "status_detail": last_event.get("description") if last_event else None,
        "timezone": customer_timezone(order, shipment),
        "eta_earliest": shipment.get("eta_p10"),
        "eta_latest": shipment.get("eta_p90"),
        "promised_date": shipment.get("promised_delivery_date"),
        "occurred_at": last_event.get("occurred_at") if last_event else None,
        "event_location": location,
        "items": [{"name": i.get("name", ""), "quantity": i.get("quantity", 1)}
                  for i in (order.get("items") or [])] if order else [],
    }
