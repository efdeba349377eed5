"""Twilio webhooks (inbound STOP/START/HELP, delivery status) and e-mail unsubscribe."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from aiohttp import web
from twilio.request_validator import RequestValidator

from service.api.keys import clock_key, pool_key, settings_key
from service.api.page_render import form, link_problem, reader_strings, render
from service.api.views.pages import verified
from service.errors import FieldError, ProblemError, validation_failed
from service.limits import scrub, unstorable
from service.store import notifications as notifications_db
from service.store import orders as orders_db

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                        "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def _twiml(message: str | None = None) -> web.Response:
    body = "<Response/>" if message is None else (
        f"<Response><Message>{message}</Message></Response>")
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?>{body}',
                        content_type="application/xml")


FORM_TYPE = "application/x-www-form-urlencoded"
_SID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_STATUS = re.compile(r"^[a-z_\-]{1,32}$")


async def _read_form(request: web.Request) -> dict[str, str]:
    """The posted form: 415 unless urlencoded (as Twilio posts), 400 unless UTF-8."""
    if request.content_type != FORM_TYPE:
        raise ProblemError(415, "Unsupported media type",
                           f"send {FORM_TYPE}, not {request.content_type[:100]}",
                           [FieldError("Content-Type", f"must be {FORM_TYPE}", "media_type")])
    body = await request.read()
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ProblemError(400, "Malformed form", "the form is not UTF-8 url-encoded text",
                           [FieldError("body", "must be UTF-8 url-encoded", "malformed")]
                           ) from None
    return dict(pairs)


async def _verified_form(request: web.Request) -> dict[str, str]:
    """The form Twilio posted, after checking X-Twilio-Signature with the SDK's validator."""
    settings = request.app[settings_key]
    form = await _read_form(request)
    # Twilio signs the URL it called: our public base URL, not the address we listen on.
    url = f"{str(settings.public_base_url).rstrip('/')}{request.path_qs}"
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(
            url, form, signature):
        raise ProblemError(401, "Unauthorized", "missing or invalid X-Twilio-Signature",
                           [FieldError("X-Twilio-Signature", "missing or invalid", "signature")])
    return form


def _field(form: dict[str, str], name: str, pattern: re.Pattern[str] | None = None,
           limit: int = 64) -> str:
    """A required form field we store: present, storable text, within its shape."""
    value = form.get(name, "")
    if not value:
        raise validation_failed([FieldError(name, "is required", "missing")])
    if unstorable(value) or len(value) > limit or (pattern and not pattern.match(value)):
        raise validation_failed([FieldError(
            name, f"must be at most {limit} characters" + (
                f" matching {pattern.pattern}" if pattern else " of text"), "pattern")])
    return value


async def twilio_inbound(request: web.Request) -> web.Response:
    form = await _verified_form(request)
    sender = _field(form, "From")
    body = scrub(form.get("Body", ""))
    word = body.strip().split(" ")[0].upper() if body.strip() else ""
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        if word in STOP_WORDS:
            await notifications_db.opt_out(conn, "sms", sender, "sms-reply",
                                           request.app[clock_key].now())
        elif word in START_WORDS:
            await notifications_db.opt_in(conn, "sms", sender)
    if word in HELP_WORDS:
        shop = request.app[settings_key].shop_name
        return _twiml(f"{shop} delivery updates. Reply STOP to unsubscribe, START to resume.")
    return _twiml()


async def twilio_status(request: web.Request) -> web.Response:
    form = await _verified_form(request)
    if not form.get("MessageSid") and form.get("SmsSid"):
        form["MessageSid"] = form["SmsSid"]
    sid, status = _field(form, "MessageSid", _SID), _field(form, "MessageStatus", _STATUS)
    async with request.app[pool_key].acquire() as conn:
        await notifications_db.record_provider_status(conn, sid, status,
                                                      request.app[clock_key].now())
    return web.Response(status=204)


def _masked(channel: str, address: str) -> str:
    """Enough of an address to recognise it, not enough to harvest it from a shared link."""
    if channel == "email":
        name, _, domain = address.partition("@")
        return f"{name[:1]}•••@{domain}"
    return f"•••{address[-4:]}"


def _unsubscribe_target(request: web.Request) -> tuple[str, str] | None:
    """(channel, address) the link was made for; None for a link that is not valid.

    Unsubscribe links never expire (a customer may find an old e-mail years later): only an
    untimed link past the operator's cutoff, or one signed with a retired key, stops working.
    """
    token = verified(request, "unsubscribe")
    if token is None:
        return None
    channel, _, address = token.value.partition(":")
    if channel not in ("email", "sms") or not address or unstorable(address):
        return None
    return channel, address


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET: a confirmation page (mail scanners follow links; only a POST unsubscribes)."""
    target = _unsubscribe_target(request)
    if target is None:
        return link_problem(request, "invalid")
    strings = reader_strings(request)
    shop = request.app[settings_key].shop_name
    return render(request, "unsubscribe.html.j2", strings, ask=True,
                  title=strings("unsubscribe_title", shop=shop),
                  text=strings("unsubscribe_text", address=_masked(*target)))


async def unsubscribe(request: web.Request) -> web.Response:
    """POST: RFC 8058 one-click unsubscribe (and the page's button). The body (if any) says
    nothing we need: the link alone names the address."""
    target = _unsubscribe_target(request)
    if target is None:
        return link_problem(request, "invalid")
    channel, address = target
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        await notifications_db.opt_out(conn, channel, address, "unsubscribe-link",
                                       request.app[clock_key].now())
    strings = reader_strings(request)
    return render(request, "unsubscribe.html.j2", strings, ask=False,
                  title=strings("unsubscribed_title"),
                  text=strings("unsubscribed_text", address=_masked(channel, address)))


async def _preferences(request: web.Request, saved: bool) -> web.Response:
    token = verified(request, "preferences")
    if token is None:
        return link_problem(request, "invalid")
    async with request.app[pool_key].acquire() as conn:
        order = await orders_db.get(conn, token.value)
        if order is None:
            return link_problem(request, "gone")
        if request.method == "POST":
            posted = await form(request)
            channel, action = str(posted.get("channel", "")), str(posted.get("action", ""))
            address = order.customer_email if channel == "email" else (
                order.customer_phone if channel == "sms" else None)
            now = request.app[clock_key].now()
            if address and action == "stop":
                async with conn.transaction():
                    await notifications_db.opt_out(conn, channel, address, "preferences-page",
                                                   now)
            elif address and action == "resume" and channel == "email":
                # E-mail only: an SMS opt-out is lifted by the customer texting START.
                await notifications_db.opt_in(conn, channel, address)
            saved = True
        channels = []
        for channel, address in (("email", order.customer_email), ("sms", order.customer_phone)):
            on = address is not None and not await notifications_db.opted_out(
                conn, channel, address)
            channels.append({"name": channel, "address": address, "on": on})
    strings = reader_strings(request, order.locale)
    shop = request.app[settings_key].shop_name
    for item in channels:
        masked = _masked(str(item["name"]), str(item["address"])) if item["address"] else "—"
        item["label"] = strings(f"channel.{item['name']}", address=masked)
    return render(request, "preferences.html.j2", strings, saved=saved, channels=channels,
                  intro=strings("preferences_intro", shop=shop, order=order.order_id))


async def preferences_page(request: web.Request) -> web.Response:
    """The customer's notification preferences for an order (linked from the tracking page)."""
    return await _preferences(request, saved=False)


async def save_preferences(request: web.Request) -> web.Response:
    """Stop a channel, or turn e-mail back on."""
    return await _preferences(request, saved=True)
