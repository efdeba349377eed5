"""The public tracking page, reached through a signed link (no login, nothing guessable)."""

from __future__ import annotations

from aiohttp import web

from service.api.keys import clock_key, pool_key, settings_key
from service.api.page_render import link_problem, reader_strings, render
from service.pages.dates import PageDates
from service.pages.tracking import tracking_page as page_of
from service.security.links import (
    Verified,
    sign,
    tracking_link_expired,
    untimed_refused,
    verify,
)
from service.store import tracking_page as tracking_page_db
from service.support.delay import assess
from service.zones import customer_zone


def verified(request: web.Request, purpose: str, *, untimed_ok: bool = False
             ) -> Verified | None:
    """The link's token, or None for anything that is not a valid one of this purpose (any
    text may arrive in a URL), or (unless `untimed_ok`) an untimed one past the operator's
    cutoff (PARCELCAST_UNTIMED_LINKS_UNTIL)."""
    settings = request.app[settings_key]
    token = verify(settings.link_secrets, purpose, request.match_info["token"])
    if token is None or (not untimed_ok and _untimed_refused(request, token)):
        return None
    return token


def _untimed_refused(request: web.Request, token: Verified) -> bool:
    settings = request.app[settings_key]
    return untimed_refused(token, settings.parcelcast_untimed_links_until,
                           request.app[clock_key].now())


async def tracking_page(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    token = verified(request, "track", untimed_ok=True)
    if token is None:
        return link_problem(request, "invalid")
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as conn:
        rows = await tracking_page_db.read(conn, token.value)
    if rows is None:
        return link_problem(request, "gone")
    shipment, order, timeline, siblings = rows.shipment, rows.order, rows.timeline, rows.siblings
    locale = order.locale if order else None
    if _untimed_refused(request, token) or tracking_link_expired(
            shipment.delivered_at, settings.tracking_link_days_after_delivery, now):
        return link_problem(request, "expired", locale)
    zone = customer_zone(order.timezone if order else None, shipment.destination_postal_code,
                         shipment.destination_country, settings.shop_timezone)
    strings = reader_strings(request, locale)
    secret = settings.parcelcast_secret_key
    issued = token.issued_at or now  # the other shipments' links live as long as this one
    page = page_of(
        shipment=shipment, order=order, timeline=timeline, siblings=siblings,
        delay=assess(shipment, timeline, None, zone, now, settings), now=now,
        shop=settings.shop_name, strings=strings, dates=PageDates(strings.formatting, zone),
        link=lambda other: f"/t/{sign(secret, 'track', other, issued)}",
        preferences_url=(f"/preferences/{sign(secret, 'preferences', shipment.order_id, issued)}"
                         if order is not None else None))
    return render(request, "tracking.html.j2", strings, page=page)
