"""The order lookup page: order number + e-mail or postcode -> the tracking page, for
customers who lost the message (rate-limited per client address and per order number)."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from service.api.keys import clock_key, pool_key, redis_key, settings_key
from service.api.page_render import form, reader_strings, render
from service.pages.lookup import allowed, matches, order_numbers
from service.security.links import sign
from service.store import orders as orders_db
from service.store import shipments as shipments_db

MAX_FIELD = 200


async def lookup_page(request: web.Request) -> web.Response:
    strings = reader_strings(request)
    return render(request, "lookup.html.j2", strings, error=None, note=None, order="",
                  contact="")


async def lookup(request: web.Request) -> web.Response:
    posted = await form(request)
    strings = reader_strings(request, str(posted.get("lang") or "") or None)
    typed, contact = str(posted.get("order") or "")[:MAX_FIELD], str(
        posted.get("contact") or "")[:MAX_FIELD]

    def again(error: str, status: int) -> web.Response:
        return render(request, "lookup.html.j2", strings, status=status, error=error, note=None,
                      order=typed, contact=contact)

    numbers = order_numbers(typed)
    if not numbers or not contact.strip():
        return again(strings("lookup_missing"), 422)
    settings = request.app[settings_key]
    try:
        ok = await allowed(request.app[redis_key], settings.parcelcast_queue_name,
                           [f"ip:{request.remote}", f"order:{numbers[-1].lower()}"],
                           settings.lookup_attempts, settings.lookup_window_s,
                           request.app[clock_key].now())
    except (RedisError, OSError):
        # Without a counter there is no limit either: no guessing while Redis is away.
        return again(strings("error_text"), 503)
    if not ok:
        return again(strings("lookup_limited"), 429)
    async with request.app[pool_key].acquire() as conn:
        for number in numbers:
            order = await orders_db.get(conn, number)
            if order is None:
                continue
            shipments = await shipments_db.find(conn, order_id=order.order_id, limit=50)
            if not matches(order, shipments, contact):
                break
            if not shipments:
                return render(request, "lookup.html.j2", strings, error=None, order="",
                              contact="", note=strings("lookup_not_shipped",
                                                       order=order.order_id))
            newest = max(shipments, key=lambda s: (s.created_at, s.shipment_id))
            token = sign(settings.parcelcast_secret_key, "track", newest.shipment_id,
                         request.app[clock_key].now())
            raise web.HTTPSeeOther(f"/t/{token}")
    return again(strings("lookup_failed"), 404)
