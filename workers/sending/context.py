"""What a template is told about a notification: built from the claimed row (order, shipment,
latest scan, the window told before)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.security.links import tracking_url, unsubscribe_url
from service.settings import Settings
from service.store.notifications import ClaimedSend
from service.tracking.carrier_codes import carrier_name as display_carrier
from service.zones import customer_zone
from workers.render.context import Item, MessageContext


def send_zone(claim: ClaimedSend, settings: Settings) -> str:
    """The customer's zone for this message (service.zones.customer_zone)."""
    return customer_zone(claim.order_timezone, claim.destination_postal_code,
                         claim.destination_country, settings.shop_timezone)


def render_context(settings: Settings, claim: ClaimedSend) -> MessageContext:
    """The template context for a claimed notification (see CLAIM_FOR_SEND)."""
    n = claim.notification
    base = str(settings.public_base_url)
    secret = settings.parcelcast_secret_key
    zone = send_zone(claim, settings)
    previous = _previous_window(claim, zone)
    location = None
    if claim.last_location:
        loc = claim.last_location
        location = ", ".join(str(loc[k]) for k in ("city", "region") if loc.get(k)) or None
    carrier = claim.carrier or ""
    return MessageContext(
        order_id=n.order_id,
        shop_name=settings.shop_name,
        carrier_name=display_carrier(carrier),
        tracking_number=claim.tracking_number or "",
        # Issued when the notification was planned: a resend carries the same links.
        tracking_url=tracking_url(base, secret, n.shipment_id, n.created_at),
        unsubscribe_url=unsubscribe_url(base, secret, n.channel, n.recipient, n.created_at),
        customer_name=claim.customer_name,
        status_detail=claim.last_description,
        timezone=zone,
        eta_earliest=claim.eta_p10,
        eta_latest=claim.eta_p90,
        previous_eta_earliest=previous[0],
        previous_eta_latest=previous[1],
        promised_date=claim.promised_delivery_date,
        occurred_at=claim.last_occurred_at,
        event_location=location,
        pickup_until=_pickup_until(claim, zone, settings),
        items=tuple(Item(name=str(i.get("name", "")), quantity=int(i.get("quantity", 1)))
                    for i in (claim.items or [])),
    )


def _previous_window(claim: ClaimedSend, zone: str
                     ) -> tuple[datetime, datetime] | tuple[None, None]:
    """The window the customer was told before, when its days differ from the current one."""
    before, now = (claim.previous_eta_p10, claim.previous_eta_p90), (claim.eta_p10, claim.eta_p90)
    if before[0] is None or before[1] is None or now[0] is None or now[1] is None:
        return None, None
    tz = ZoneInfo(zone)
    days_before = (before[0].astimezone(tz).date(), before[1].astimezone(tz).date())
    days_now = (now[0].astimezone(tz).date(), now[1].astimezone(tz).date())
    return (before[0], before[1]) if days_before != days_now else (None, None)


def _pickup_until(claim: ClaimedSend, zone: str, settings: Settings) -> date | None:
    """Last day to collect: the pickup scan's day plus the carrier's holding period."""
    hold = settings.pickup_hold_days.get(claim.carrier or "")
    if claim.status != "available_for_pickup" or hold is None or claim.last_occurred_at is None:
        return None
    return claim.last_occurred_at.astimezone(ZoneInfo(zone)).date() + timedelta(days=hold)
