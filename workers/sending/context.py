"""What a template is told about a notification: built from the stored order and shipment."""

from __future__ import annotations

from typing import Any

from service.eta.runtime import customer_timezone
from service.security.links import tracking_url, unsubscribe_url
from service.settings import Settings
from service.tracking.taxonomy import CARRIERS


def render_context(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """The template context from a claimed notification row (see CLAIM_FOR_SEND)."""
    base = str(settings.public_base_url)
    secret = settings.parcelcast_secret_key
    location = None
    if row.get("last_location"):
        loc = row["last_location"]
        location = ", ".join(str(loc[k]) for k in ("city", "region") if loc.get(k)) or None
    return {
        "order_id": row["order_id"],
        "shop_name": settings.shop_name,
        "carrier_name": CARRIERS.get(row["carrier"], row["carrier"]),
        "tracking_number": row["tracking_number"],
        # Issued when the notification was planned: a resend carries the same links.
        "tracking_url": tracking_url(base, secret, row["shipment_id"], row["created_at"]),
        "unsubscribe_url": unsubscribe_url(base, secret, row["channel"], row["recipient"],
                                           row["created_at"]),
        "customer_name": row.get("customer_name"),
        "status": row["status"],
        "status_detail": row.get("last_description"),
        "timezone": customer_timezone(row, row),
        "eta_earliest": row.get("eta_p10"),
        "eta_latest": row.get("eta_p90"),
        "promised_date": row.get("promised_delivery_date"),
        "occurred_at": row.get("last_occurred_at"),
        "event_location": location,
        "items": [{"name": i.get("name", ""), "quantity": i.get("quantity", 1)}
                  for i in (row.get("items") or [])],
    }
