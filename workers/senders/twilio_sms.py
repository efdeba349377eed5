"""SMS through the official `twilio` SDK's async path, with errors mapped to our two kinds.

Pointing the SDK elsewhere (tests, the demo's stand-in): the SDK builds every Messages URL
as `client.api.base_url + "/2010-04-01/Accounts/{sid}/Messages.json"`; `base_url` is a
plain attribute of the `Api` domain, set from "https://api.twilio.com" in its constructor.
Overriding it on our own client instance is the narrowest hook the SDK offers: requests
still go through the SDK's own auth, headers, form encoding and error parsing. The
`edge`/`region` settings cannot do this: they only rewrite the host *inside* twilio.com
(api.{edge}.{region}.twilio.com) and would mangle a loopback address, so they are refused
together with `base_url`.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from workers.senders.errors import (
    PermanentSendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from workers.senders.messages import SmsMessage
from workers.senders.ratelimit import RateLimiter

# Retry-After of the response the current task just received. TwilioRestException carries
# no headers, and a context variable set inside the awaited request is visible to the
# awaiting task only, so concurrent sends cannot see each other's value.
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None)


# The SDK falls back to TWILIO_EDGE/TWILIO_REGION from os.environ (and to os.environ for
# an empty mapping): explicit blanks keep a stray variable from re-routing our requests.
_NO_ENV = {"TWILIO_EDGE": "", "TWILIO_REGION": ""}
# Newest first: one page covers every message a customer got in the lookup's window.
LOOKUP_LIMIT = 200


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date form: we let the retry schedule decide


class _RetryAfterHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client, remembering Retry-After for the error mapping.

    It also sends the basic-auth header itself: the SDK builds an `aiohttp.BasicAuth`,
    which aiohttp 3.14 deprecates (a warning per request); the header is byte-identical.
    """

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None,
                      headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None,
                      timeout: float | None = None,  # noqa: ASYNC109 - the SDK's signature
                      allow_redirects: bool = False) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        response = await super().request(method, url, params=params, data=data,
                                         headers=headers, auth=None, timeout=timeout,
                                         allow_redirects=allow_redirects)
        headers = response.headers or {}
        _retry_after.set(_parse_retry_after(headers.get("Retry-After")))
        return response


def with_notification_id(url: str, notification_id: str) -> str:
    """The status callback URL carrying our notification id, so a callback (and the
    stand-in's duplicate check) can tie the provider's message to our notification."""
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    query += urlencode({"notification_id": notification_id})
    return urlunsplit(parts._replace(query=query))


def warm() -> None:
    """Import the REST API's message classes now: the Twilio client imports them lazily at
    its first message, ~1.5 s of CPU on a busy machine, on the event loop of a worker that
    is sending (call this in a thread at start)."""
    import twilio.rest.api.v2010.account  # noqa: F401


class TwilioSmsSender:
    """Sends `SmsMessage`s with one reused SDK client (and aiohttp session) per sender."""

    def __init__(self, account_sid: str, auth_token: str, *, from_number: str | None = None,
                 messaging_service_sid: str | None = None, base_url: str | None = None,
                 edge: str | None = None, region: str | None = None, timeout: float = 10.0,
                 rate_limit: float | None = None, rate_burst: int = 10) -> None:
        if (from_number is None) == (messaging_service_sid is None):
            raise ValueError("give exactly one of from_number or messaging_service_sid")
        if base_url is not None and (edge or region):
            raise ValueError("base_url replaces the host; edge/region cannot apply to it")
        self.account_sid = account_sid
        self._auth_token = auth_token
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.base_url = base_url.rstrip("/") if base_url else None
        self.edge, self.region = edge, region
        self.timeout = timeout
        self.limiter = RateLimiter(rate_limit, rate_burst) if rate_limit else None
        self._client: Client | None = None
        self._http: _RetryAfterHttpClient | None = None

    def _ensure_client(self) -> Client:
        # Built on first use, inside the running loop: aiohttp sessions must not be
        # created (and the loop must not be captured) in a constructor.
        if self._client is None:
            self._http = _RetryAfterHttpClient()
            client = Client(self.account_sid, self._auth_token, http_client=self._http,
                            edge=self.edge, region=self.region, environment=_NO_ENV)
            if self.base_url is not None:
                client.api.base_url = self.base_url
            self._client = client
        return self._client

    async def send(self, message: SmsMessage) -> SendResult:
        """Hand one SMS to Twilio; raises TransientSendError or PermanentSendError."""
        client = self._ensure_client()
        if self.limiter is not None:
            await self.limiter.acquire()
        callback = (with_notification_id(message.status_callback, message.notification_id)
                    if message.status_callback else None)
        kwargs: dict[str, Any] = {"to": message.to, "body": message.body}
        if callback is not None:
            kwargs["status_callback"] = callback
        if self.messaging_service_sid is not None:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        _retry_after.set(None)
        try:
            async with asyncio.timeout(self.timeout):
                created = await client.messages.create_async(**kwargs)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _map_error(exc, _retry_after.get()) from exc
        except TimeoutError as exc:
            raise UncertainSendError(f"twilio: no answer within {self.timeout}s") from exc
        except aiohttp.ClientConnectorError as exc:
            # Never connected: the request cannot have reached Twilio.
            raise TransientSendError(f"twilio: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # Dropped after connecting: Twilio may have the message.
            raise UncertainSendError(f"twilio: {type(exc).__name__}: {exc}") from exc
        return SendResult(provider_id=str(created.sid))

    @property
    def settle_s(self) -> float:
        """How long after an unanswered request its message may still turn up in the list
        (the request may sit in Twilio's queue, or ours, past our timeout): before that, not
        finding it proves nothing."""
        return 2 * self.timeout

    async def lookup(self, message: SmsMessage, since: datetime) -> SendResult | None:
        """The provider's id for `message` if Twilio already has it (same To and Body, created
        no earlier than a day before `since`): how an interrupted or unanswered send learns
        whether it went out.

        Not filtered by DateSent: a message Twilio accepted but has not sent yet (queued) has
        no date_sent, and it is exactly the one a timed-out request may have left behind.
        """
        client = self._ensure_client()
        try:
            async with asyncio.timeout(self.timeout):
                found = await client.messages.list_async(to=message.to, limit=LOOKUP_LIMIT)
        except (TwilioRestException, TwilioServiceException, TimeoutError,
                aiohttp.ClientError, OSError) as exc:
            raise TransientSendError(f"twilio: cannot check for an earlier send: {exc}") from exc
        earliest = since - timedelta(days=1)  # clocks disagree; a day of margin costs nothing
        for sent in found:
            created = sent.date_created
            if sent.body == message.body and (created is None or created >= earliest):
                return SendResult(provider_id=str(sent.sid))
        return None

    async def aclose(self) -> None:
        """Close the SDK's aiohttp session."""
        if self._http is not None:
            await self._http.close()
        self._client = self._http = None


def _map_error(exc: TwilioRestException | TwilioServiceException,
               retry_after: float | None) -> TransientSendError | PermanentSendError:
    status = int(exc.status)
    code = int(exc.code) if exc.code is not None else status
    reason = str(getattr(exc, "msg", None) or getattr(exc, "detail", None) or "")
    if status == 429 or status >= 500:
        return TransientSendError(f"twilio {status} ({code}): {reason}", retry_after)
    return PermanentSendError(code, reason)
