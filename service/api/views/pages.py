"""The public tracking page, reached through a signed link (no login, nothing guessable)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from aiohttp import web
from babel.dates import format_date, format_datetime
from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from service.api.keys import pool_key, settings_key
from service.errors import ProblemError
from service.security.links import unsign
from service.settings import REPO_ROOT
from service.store import etas
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.tracking.taxonomy import CARRIERS
from service.zones import customer_zone

_pages = SandboxedEnvironment(
    loader=FileSystemLoader(str(REPO_ROOT / "templates" / "pages")),
    autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
)
STATUS_TEXT = {
    "label_created": "Label created: waiting for the carrier",
    "in_transit": "On its way", "out_for_delivery": "Out for delivery today",
    "delivery_attempted": "Delivery attempted", "available_for_pickup": "Ready for pickup",
    "delivered": "Delivered", "exception": "Delayed: the carrier reported a problem",
    "returned_to_sender": "Returned to sender", "cancelled": "Cancelled", "unknown": "Update",
}


def _babel_locale(locale: str) -> str:
    return locale.replace("-", "_")


async def tracking_page(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    shipment_id = unsign(settings.parcelcast_secret_key, "track", request.match_info["token"])
    if shipment_id is None:
        raise ProblemError(404, "Not found", "this tracking link is not valid")
    async with request.app[pool_key].acquire() as conn:
        shipment = await shipments_db.get(conn, shipment_id)
        if shipment is None:
            raise ProblemError(404, "Not found", "this shipment no longer exists")
        order = await orders_db.get(conn, shipment.order_id)
        timeline = await shipments_db.timeline(conn, shipment.carrier, shipment.tracking_number)
        _, latest = await etas.first_and_latest(conn, shipment_id)
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

    html = _pages.get_template("tracking.html.j2").render(
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
