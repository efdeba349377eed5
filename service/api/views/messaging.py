"""Twilio webhooks (inbound STOP/START/HELP, delivery status) and e-mail unsubscribe."""

from __future__ import annotations

from aiohttp import web
from twilio.request_validator import RequestValidator

from service.api.keys import clock_key, pool_key, settings_key
from service.errors import ProblemError
from service.security.links import unsign
from service.store import notifications as notifications_db

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                        "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def _twiml(message: str | None = None) -> web.Response:
    body = "<Response/>" if message is None else (
        f"<Response><Message>{message}</Message></Response>")
    return web.Response(text=f'<?xml version="1.0" encoding="UTF-8"?>{body}',
                        content_type="application/xml")


async def _verified_form(request: web.Request) -> dict[str, str]:
    """The form Twilio posted, after checking X-Twilio-Signature with the SDK's validator."""
    settings = request.app[settings_key]
    form = {k: str(v) for k, v in (await request.post()).items()}
    # Twilio signs the URL it called: our public base URL, not the address we listen on.
    url = f"{str(settings.public_base_url).rstrip('/')}{request.path_qs}"
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(settings.twilio_auth_token).validate(
            url, form, signature):
        raise ProblemError(401, "Unauthorized", "missing or invalid X-Twilio-Signature")
    return form


async def twilio_inbound(request: web.Request) -> web.Response:
    form = await _verified_form(request)
    sender = form.get("From", "")
    word = form.get("Body", "").strip().split(" ")[0].upper() if form.get("Body") else ""
    if not sender:
        raise ProblemError(422, "Validation failed", "From is missing")
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
    sid, status = form.get("MessageSid") or form.get("SmsSid"), form.get("MessageStatus")
    if not sid or not status:
        raise ProblemError(422, "Validation failed", "MessageSid and MessageStatus are required")
    async with request.app[pool_key].acquire() as conn:
        await notifications_db.record_provider_status(conn, sid, status,
                                                      request.app[clock_key].now())
    return web.Response(status=204)


def _unsubscribe_target(request: web.Request) -> tuple[str, str]:
    value = unsign(request.app[settings_key].parcelcast_secret_key, "unsubscribe",
                   request.match_info["token"])
    if value is None or ":" not in value:
        raise ProblemError(404, "Not found", "this unsubscribe link is not valid")
    channel, _, address = value.partition(":")
    return channel, address


async def unsubscribe_page(request: web.Request) -> web.Response:
    """GET: a confirmation page (mail scanners follow links; only a POST unsubscribes)."""
    channel, address = _unsubscribe_target(request)
    shop = request.app[settings_key].shop_name
    return web.Response(content_type="text/html", text=(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
        f"<h1>Stop delivery e-mails from {shop}?</h1>"
        f"<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
        f"<button>Unsubscribe</button></form>"))


async def unsubscribe(request: web.Request) -> web.Response:
    """POST: RFC 8058 one-click unsubscribe (and the page's button)."""
    channel, address = _unsubscribe_target(request)
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        await notifications_db.opt_out(conn, channel, address, "unsubscribe-link",
                                       request.app[clock_key].now())
    return web.Response(content_type="text/html",
                        text="<!doctype html><meta charset=utf-8><p>You are unsubscribed.</p>")
