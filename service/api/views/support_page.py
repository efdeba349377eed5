"""The support page (/support): sign in, search, one shipment with everything and the
actions. Server-rendered HTML that works without JavaScript, drawn from the same reads and
actions as the support API."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from service.api.keys import clock_key, pool_key, settings_key
from service.api.page_render import HEADERS, form, pages
from service.api.principal import Principal, key_principal
from service.api.support_present import audit_json, case_json, hit_json
from service.api.support_session import (
    agent,
    csrf_ok,
    csrf_token,
    same_origin,
    sign_in,
    sign_out,
)
from service.inputs import MarkLostIn, SupportNoteIn
from service.security.api_keys import KEY_PREFIX
from service.store import search as search_db
from service.store import shipments as shipments_db
from service.store import support_actions
from service.support import actions
from service.support.case import load_case
from service.support.chart import eta_chart
from service.support.search import criteria_for_text, decode_cursor, encode_cursor

_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")
DONE = {"resend": "Message queued: it goes out in a moment.", "mute": "Order muted.",
        "unmute": "Order unmuted.", "lost": "Shipment declared lost.",
        "delivered": "Shipment marked delivered."}
ACTIONS = ("resend", "mute", "lost", "delivered")
# "same-origin", not the customer pages' "no-referrer": with that, a browser posts forms with
# `Origin: null`, and the Origin check is half of the CSRF defence here.
SUPPORT_HEADERS = {**HEADERS, "Referrer-Policy": "same-origin"}


def _page(request: web.Request, template: str, who: Principal | None, status: int = 200,
          **context: Any) -> web.Response:
    settings = request.app[settings_key]
    html = pages.get_template(f"support/{template}").render(
        shop=settings.shop_name, who=who.actor if who else None,
        csrf=csrf_token(request) if who else "", **context)
    return web.Response(text=html, status=status, content_type="text/html",
                        headers=SUPPORT_HEADERS)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **SUPPORT_HEADERS})


async def _reader(request: web.Request) -> tuple[Principal | None, web.Response | None]:
    """The agent, or the sign-in page to answer with instead."""
    who = await agent(request)
    if who is None:  # a form posted without a session is refused; a page asks to sign in
        return None, _page(request, "signin.html.j2", None,
                           200 if request.method == "GET" else 401, error=None)
    if not who.may("shipments:read"):
        return None, _page(request, "signin.html.j2", None, 403,
                           error="This key lacks the shipments:read scope.")
    return who, None


async def home(request: web.Request) -> web.Response:
    """Sign-in, or the search box and its results, newest first, a page at a time."""
    who, refusal = await _reader(request)
    if refusal is not None or who is None:
        return refusal or _page(request, "signin.html.j2", None, error=None)
    q = " ".join(request.query.get("q", "").split())[:200]
    hits: list[dict[str, Any]] = []
    next_url = None
    if q:
        after = decode_cursor(request.query.get("cursor", ""))
        settings = request.app[settings_key]
        async with request.app[pool_key].acquire() as conn:
            found, more = await search_db.find(
                conn, criteria_for_text(q, settings.shop_country), match_any=True, limit=25,
                after=after)
        hits = [hit_json(h) for h in found]
        if more is not None:
            next_url = f"/support?q={quote(q)}&cursor={encode_cursor(more)}"
    return _page(request, "search.html.j2", who, q=q, hits=hits, next_url=next_url)


async def sign_in_post(request: web.Request) -> web.Response:
    posted = await form(request)
    key = str(posted.get("key", "")).strip()
    if not same_origin(request):
        return _page(request, "signin.html.j2", None, 403, error="Sign in from this site.")
    found = None
    if key.startswith(KEY_PREFIX) and key.isascii() and len(key) <= 200:
        found = await key_principal(request, key)
    if found is None:
        return _page(request, "signin.html.j2", None, 401, error="Unknown or revoked API key.")
    if not found.may("shipments:read"):
        return _page(request, "signin.html.j2", None, 403,
                     error="This key lacks the shipments:read scope.")
    response = _see_other("/support")
    sign_in(response, request, key)
    return response


async def sign_out_post(request: web.Request) -> web.Response:
    posted = await form(request)
    if not csrf_ok(request, str(posted.get("csrf", ""))):
        return _page(request, "signin.html.j2", None, 403, error="Sign out from this site.")
    response = _see_other("/support")
    sign_out(response)
    return response


async def _shipment_view(request: web.Request, who: Principal, shipment_id: str,
                         status: int = 200, error: str | None = None,
                         done: str | None = None) -> web.Response:
    settings = request.app[settings_key]
    now = request.app[clock_key].now()
    async with request.app[pool_key].acquire() as conn:
        row = await shipments_db.get(conn, shipment_id) if _ID.match(shipment_id) else None
        if row is None:
            return _page(request, "search.html.j2", who, 404, q=shipment_id, hits=[],
                         next_url=None)
        case = await load_case(conn, row, settings, now)
        audit = await support_actions.for_order(conn, row.order_id)
    chart = eta_chart(case.first, case.current, row.promised_delivery_date, now,
                      row.delivered_at, case.zone)
    return _page(request, "shipment.html.j2", who, status, v=case_json(case, settings),
                 chart=chart, audit=[audit_json(a) for a in audit],
                 can_act=who.may("support:write"), error=error, done=done)


async def shipment_page(request: web.Request) -> web.Response:
    who, refusal = await _reader(request)
    if refusal is not None or who is None:
        return refusal or _page(request, "signin.html.j2", None, error=None)
    done = DONE.get(request.query.get("done", ""))
    return await _shipment_view(request, who, request.match_info["shipment_id"], done=done)


async def act(request: web.Request) -> web.Response:
    """A form's action (resend, mute, lost, delivered): CSRF-checked, audited, then back to
    the shipment (303), or the shipment again with the reason it was refused."""
    who, refusal = await _reader(request)
    if refusal is not None or who is None:
        return refusal or _page(request, "signin.html.j2", None, error=None)
    shipment_id, action = request.match_info["shipment_id"], request.match_info["action"]
    if not _ID.match(shipment_id) or action not in ACTIONS:
        return _page(request, "search.html.j2", who, 404, q=shipment_id, hits=[],
                     next_url=None)
    posted = await form(request)
    if not csrf_ok(request, str(posted.get("csrf", ""))):
        return await _shipment_view(request, who, shipment_id, 403,
                                    error="This form has expired: reload the page and try again.")
    if not who.may("support:write"):
        return await _shipment_view(request, who, shipment_id, 403,
                                    error="Your key lacks the support:write scope.")
    note = str(posted.get("note", ""))
    now = request.app[clock_key].now()
    try:
        async with request.app[pool_key].acquire() as conn:
            if action == "resend":
                raw = str(posted.get("notification_id", ""))
                if not raw.isdigit() or len(raw) > 18:
                    raise actions.NotFound("notification", raw)
                await actions.resend(conn, int(raw), who.actor,
                                     SupportNoteIn(note=note).note, now, shipment_id)
            elif action == "mute":
                row = await shipments_db.get(conn, shipment_id)
                if row is None:
                    raise actions.NotFound("shipment", shipment_id)
                muted = str(posted.get("muted", "true")) != "false"
                await actions.mute(conn, row.order_id, muted, who.actor,
                                   SupportNoteIn(note=note).note, now)
                action = "mute" if muted else "unmute"
            elif action == "lost":
                await actions.mark_lost(conn, shipment_id, who.actor,
                                        MarkLostIn(note=note).note, now)
            else:
                await actions.mark_delivered(conn, shipment_id, who.actor,
                                             MarkLostIn(note=note).note, now)
    except ValidationError:
        return await _shipment_view(request, who, shipment_id, 422,
                                    error="Write a note (up to 1,000 characters) saying why.")
    except actions.NotFound as exc:
        return await _shipment_view(request, who, shipment_id, 404, error=f"{exc}.")
    except actions.Refused as exc:
        return await _shipment_view(request, who, shipment_id, 409,
                                    error=f"Not done: {exc}.")
    return _see_other(f"/support/shipments/{quote(shipment_id)}?done={action}")
