"""A stand-in for Twilio's Messages API, speaking enough of it for the official SDK.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   create (basic auth checked)
    GET  /_messages        everything received, in order
    GET  /_stats           {"received", "accepted", "duplicates", "failed"}
    POST /_control         {"fail_next": N, "status": 500|503|429, "retry_after": s,
                            "invalid_numbers": [...], "unsubscribed_numbers": [...],
                            "callbacks": true|false}
    POST /_reset           forget messages, counters and failure settings

A duplicate is a second message with the same notification id (from the StatusCallback
query, see workers.senders.twilio_sms) or, without one, the same To and Body.
Run: python -m standins.twilio_server --port P [--account-sid AC... --auth-token T]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from service.clock import Clock, SystemClock
from standins.common import start_site
from workers.render.segments import count_segments

DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "standin-auth-token"
log = logging.getLogger(__name__)

_ERRORS = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
}


@dataclass
class TwilioState:
    """What the stand-in has seen and how it has been told to misbehave."""

    account_sid: str
    auth_token: str
    clock: Clock
    messages: list[dict[str, Any]] = field(default_factory=list)
    keys: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    failed: int = 0
    fail_next: int = 0
    fail_status: int = 500
    retry_after: float | None = None
    invalid_numbers: set[str] = field(default_factory=set)
    unsubscribed_numbers: set[str] = field(default_factory=set)
    callbacks: bool = False
    # Seconds to hold each answer after recording the message: lets a test kill the
    # sender while the provider has the message but the sender has no reply yet.
    delay: float = 0.0

    def reset(self) -> None:
        self.messages.clear()
        self.keys.clear()
        self.duplicates = self.failed = self.fail_next = 0
        self.fail_status, self.retry_after, self.callbacks = 500, None, False
        self.delay = 0.0
        self.invalid_numbers.clear()
        self.unsubscribed_numbers.clear()


STATE = web.AppKey("twilio_state", TwilioState)
CALLBACK_SESSION = web.AppKey("twilio_callback_session", aiohttp.ClientSession)
CALLBACK_TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("twilio_callback_tasks")


def _error(code: int, status: int, headers: dict[str, str] | None = None,
           **fmt: str) -> web.Response:
    body = {"code": code, "message": _ERRORS[code].format(**fmt),
            "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
    return web.json_response(body, status=status, headers=headers)


def _authorized(request: web.Request, state: TwilioState) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return (secrets.compare_digest(user, state.account_sid)
            and secrets.compare_digest(password, state.auth_token))


def _idempotency_key(to: str, body: str, callback: str | None) -> str:
    if callback:
        marker = parse_qs(urlsplit(callback).query).get("notification_id")
        if marker:
            return f"id:{marker[0]}"
    return f"to-body:{to}\x00{body}"


async def create_message(request: web.Request) -> web.Response:
    state = request.app[STATE]
    account_sid = request.match_info["account_sid"]
    if not _authorized(request, state):
        return _error(20003, 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    if account_sid != state.account_sid:
        return _error(20404, 404)
    form = await request.post()
    to, body = str(form.get("To", "")), str(form.get("Body", ""))
    from_ = form.get("From")
    service_sid = form.get("MessagingServiceSid")
    callback = form.get("StatusCallback")
    if not to:
        return _error(21604, 400)
    if not body:
        return _error(21602, 400)
    if not from_ and not service_sid:
        return _error(21603, 400)
    if state.fail_next > 0:
        state.fail_next -= 1
        state.failed += 1
        headers = ({"Retry-After": f"{state.retry_after:g}"}
                   if state.retry_after is not None else None)
        code = 20429 if state.fail_status == 429 else 20500
        return _error(code, state.fail_status, headers)
    if to in state.invalid_numbers or not (to.startswith("+") and to[1:].isdigit()
                                           and 8 <= len(to) <= 16):
        state.failed += 1
        return _error(21211, 400, to=to)
    if to in state.unsubscribed_numbers:
        state.failed += 1
        return _error(21610, 400)

    key = _idempotency_key(to, body, str(callback) if callback else None)
    if state.keys[key]:
        state.duplicates += 1
    state.keys[key] += 1
    sid = "SM" + secrets.token_hex(16)
    now = format_datetime(state.clock.now(), usegmt=True)
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
    resource = {
        "account_sid": account_sid, "api_version": "2010-04-01", "body": body,
        "date_created": now, "date_sent": None, "date_updated": now,
        "direction": "outbound-api", "error_code": None, "error_message": None,
        "from": str(from_) if from_ else None,
        "messaging_service_sid": str(service_sid) if service_sid else None,
        "num_media": "0", "num_segments": str(count_segments(body).segments),
        "price": None, "price_unit": "USD", "sid": sid,
        "status": "accepted" if service_sid else "queued",
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": to, "uri": uri,
    }
    state.messages.append({**resource, "status_callback": str(callback) if callback else None})
    if state.delay:
        await asyncio.sleep(state.delay)
    if state.callbacks and callback:
        task = asyncio.create_task(_send_callback(request.app, str(callback), resource))
        request.app[CALLBACK_TASKS].add(task)
        task.add_done_callback(request.app[CALLBACK_TASKS].discard)
    return web.json_response(resource, status=201)


async def _send_callback(app: web.Application, url: str, resource: dict[str, Any]) -> None:
    """POST "sent" then "delivered" the way Twilio does, signed with X-Twilio-Signature."""
    state = app[STATE]
    validator = RequestValidator(state.auth_token)
    for status in ("sent", "delivered"):
        params = {"MessageSid": resource["sid"], "SmsSid": resource["sid"],
                  "AccountSid": resource["account_sid"], "To": resource["to"],
                  "From": resource["from"] or "", "MessageStatus": status,
                  "SmsStatus": status, "ApiVersion": "2010-04-01"}
        headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
        try:
            async with app[CALLBACK_SESSION].post(url, data=params, headers=headers) as resp:
                await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("status callback to %s failed: %s", url, exc)
            return


async def list_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].messages)


async def list_messages_api(request: web.Request) -> web.Response:
    """Twilio's `GET .../Messages.json` (filtered by To/From), one page, newest first."""
    state = request.app[STATE]
    if not _authorized(request, state):
        return _error(20003, 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
    to, from_ = request.query.get("To"), request.query.get("From")
    found = [
        {k: v for k, v in m.items() if k != "status_callback"}
        for m in reversed(state.messages)
        if (to is None or m["to"] == to) and (from_ is None or m["from"] == from_)
    ]
    uri = request.path
    return web.json_response({
        "messages": found, "page": 0, "page_size": max(len(found), 50), "uri": uri,
        "first_page_uri": uri, "next_page_uri": None, "previous_page_uri": None,
        "start": 0, "end": max(len(found) - 1, 0),
    })


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"received": len(state.messages) + state.failed,
                              "accepted": len(state.messages),
                              "duplicates": state.duplicates, "failed": state.failed})


async def control(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    if "fail_next" in body:
        state.fail_next = int(body["fail_next"])
        state.fail_status = int(body.get("status", 500))
        state.retry_after = (float(body["retry_after"])
                             if body.get("retry_after") is not None else None)
    if "invalid_numbers" in body:
        state.invalid_numbers = set(body["invalid_numbers"])
    if "unsubscribed_numbers" in body:
        state.unsubscribed_numbers = set(body["unsubscribed_numbers"])
    if "callbacks" in body:
        state.callbacks = bool(body["callbacks"])
    if "delay" in body:
        state.delay = float(body["delay"])
    return web.json_response({"ok": True})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


async def _callback_ctx(app: web.Application) -> Any:
    app[CALLBACK_SESSION] = aiohttp.ClientSession()
    yield
    pending: set[asyncio.Task[None]] = app[CALLBACK_TASKS]
    for task in list(pending):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[CALLBACK_SESSION].close()


def create_app(account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN,
               clock: Clock | None = None) -> web.Application:
    """The stand-in app; does no I/O until started."""
    app = web.Application()
    app[STATE] = TwilioState(account_sid, auth_token, clock or SystemClock())
    tasks: set[asyncio.Task[None]] = set()
    app[CALLBACK_TASKS] = tasks
    app.cleanup_ctx.append(_callback_ctx)
    app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", create_message)
    app.router.add_get("/2010-04-01/Accounts/{account_sid}/Messages.json", list_messages_api)
    app.router.add_get("/_messages", list_messages)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_control", control)
    app.router.add_post("/_reset", reset)
    return app


class TwilioStandin:
    """The stand-in running in this process, for tests: `await start()`, `await stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 account_sid: str = DEFAULT_ACCOUNT_SID,
                 auth_token: str = DEFAULT_AUTH_TOKEN) -> None:
        self.host, self.port = host, port
        self.app = create_app(account_sid, auth_token)
        self.state = self.app[STATE]
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> TwilioStandin:
        self._runner, self.port = await start_site(self.app, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(f"twilio stand-in on http://{args.host}:{args.port}", flush=True)
    web.run_app(create_app(args.account_sid, args.auth_token), host=args.host, port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
