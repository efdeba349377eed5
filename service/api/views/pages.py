"""The public tracking page, reached through a signed link (no login, nothing guessable)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime

from service.api.keys import clock_key, pool_key, settings_key
from service.api.link_pages import link_page, page_templates
from service.security.links import tracking_link_expired, untimed_refused, verify
from service.store import etas
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.tracking.taxonomy import CARRIERS
from service.zones import customer_zone

STATUS_TEXT = {
    "label_created": "Label created: waiting for the carrier",
    "in_transit": "On its way", "out_for_delivery": "Out for delivery today",
    "delivery_attempted": "Delivery attempted", "available_for_pickup": "Ready for pickup",
    "delivered": "Delivered", "exception": "Delayed: the carrier reported a problem",
    "returned_to_sender": "Returned to sender", "cancelled": "Cancelled", "unknown": "Update",
}


def _babel_locale(locale: str) -> str:
    """Babel's name for the locale; English for one Babel does not know (any BCP 47 tag
    is a valid order locale)."""
    try:
        return str(Locale.parse(locale.replace("-", "_")))
    except (UnknownLocaleError, ValueError):
        return "en"


async def tracking_page(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    now = request.app[clock_key].now()
    token = verify(settings.link_secrets, "track", request.match_info["token"])
    if token is None:
        return link_page(request, "invalid")
    async with request.app[pool_key].acquire() as conn:
        shipment = await shipments_db.get(conn, token.value)
        if shipment is None:
            return link_page(request, "gone")
        order = await orders_db.get(conn, shipment.order_id)
        customer_locale = order.locale if order else None
        if untimed_refused(token, settings.parcelcast_untimed_links_until, now) or \
                tracking_link_expired(shipment.delivered_at,
                                      settings.tracking_link_days_after_delivery, now):
            return link_page(request, "expired", customer_locale)
        timeline = await shipments_db.timeline(conn, shipment.carrier, shipment.tracking_number)
        _, latest = await etas.first_and_latest(conn, token.value)
    zone = customer_zone(order.timezone if order else None, shipment.destination_postal_code,
                         shipment.destination_country, settings.shop_timezone)
    locale_tag = order.locale if order else "en"
    tz, locale = ZoneInfo(zone), _babel_locale(locale_tag)

    def day(value: datetime | date | None) -> str | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            value = value.astimezone(tz).date()
        return format_date(value, "EEEE d MMMM", locale=locale)

    html = page_templates.get_template("tracking.html.j2").render(
        locale=locale_tag, shop_name=settings.shop_name,
        order_id=shipment.order_id, tracking_number=shipment.tracking_number,
        carrier_name=CARRIERS.get(shipment.carrier, shipment.carrier),
        status_text=STATUS_TEXT.get(shipment.status, shipment.status),
        delivered_on=day(shipment.delivered_at),
        eta_earliest=day(latest.eta_p10) if latest else None,
        eta_likely=day(latest.eta_p50) if latest else None,
        eta_latest=day(latest.eta_p90) if latest else None,
        promised=day(shipment.promised_delivery_date), timezone=zone,
        timeline=[{
            "text": e.description or STATUS_TEXT.get(e.status, e.status),
            "place": ", ".join(str(e.location[k]) for k in ("city", "region")
                               if e.location and e.location.get(k)) or None,
            "when": format_datetime(e.occurred_at.astimezone(tz), "EEE d MMM, HH:mm",
                                    locale=locale),
        } for e in reversed(timeline)],
    )
    return web.Response(text=html, content_type="text/html")
