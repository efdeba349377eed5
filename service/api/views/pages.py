"""The public tracking page, reached through a signed link (no login, nothing guessable)."""

from __future__ import annotations

from aiohttp import web

from service.api.keys import clock_key, pool_key, settings_key
from service.api.page_render import not_found, reader_strings, render
from service.pages.dates import PageDates
from service.pages.tracking import tracking_page as page_of
from service.security.links import sign, unsign
from service.store import tracking_page as tracking_page_db
from service.support.delay import assess
from service.zones import customer_zone

MAX_TOKEN = 512


def verified(request: web.Request, purpose: str) -> str | None:
    """The value a link's token was signed for, or None for anything else (any text may
    arrive in a URL)."""
    token = request.match_info["token"]
    if not token.isascii() or len(token) > MAX_TOKEN:
        return None
    return unsign(request.app[settings_key].parcelcast_secret_key, purpose, token)


async def tracking_page(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    shipment_id = verified(request, "track")
    if shipment_id is None:
        return not_found(request)
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as conn:
        rows = await tracking_page_db.read(conn, shipment_id)
    if rows is None:
        return not_found(request)
    shipment, order, timeline, siblings = rows.shipment, rows.order, rows.timeline, rows.siblings
    zone = customer_zone(order.timezone if order else None, shipment.destination_postal_code,
                         shipment.destination_country, settings.shop_timezone)
    strings = reader_strings(request, order.locale if order else None)
    secret = settings.parcelcast_secret_key
    page = page_of(
        shipment=shipment, order=order, timeline=timeline, siblings=siblings,
        delay=assess(shipment, timeline, None, zone, now, settings), now=now,
        shop=settings.shop_name, strings=strings, dates=PageDates(strings.formatting, zone),
        link=lambda other: f"/t/{sign(secret, 'track', other)}",
        preferences_url=(f"/preferences/{sign(secret, 'preferences', shipment.order_id)}"
                         if order is not None else None))
    return render(request, "tracking.html.j2", strings, page=page)
