"""E-mail over SMTP (any provider or relay) with a small pool of reused connections."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
)

from workers.render.email_message import envelope, wire_bytes
from workers.senders.errors import PermanentSendError, SendResult, TransientSendError
from workers.senders.ratelimit import RateLimiter

_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)
# 421: the server is closing this connection; 4xx otherwise: it will accept later.
_CLOSING = 421


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to connect. `start_tls=None` upgrades when the server offers it."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    use_tls: bool = False          # implicit TLS (port 465)
    start_tls: bool | None = None  # STARTTLS: True = required, False = never, None = if offered
    validate_certs: bool = True
    timeout: float = 30.0


class SmtpEmailSender:
    """Sends `EmailMessage`s; up to `pool_size` connections are kept open and reused.

    Reuse is what makes SMTP fast (one connect + EHLO + AUTH per connection, not per
    message). A connection the server dropped while idle is noticed before use and
    reopened; one that fails mid-send is discarded, never retried here: whether the
    server took the message is unknown, so the caller's retry (with the same Message-ID
    and notification id) decides.
    """

    def __init__(self, settings: SmtpSettings, *, pool_size: int = 4,
                 rate_limit: float | None = None, rate_burst: int = 10) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.settings = settings
        self.pool_size = pool_size
        self.limiter = RateLimiter(rate_limit, rate_burst) if rate_limit else None
        self._idle: list[SMTP] = []
        self._slots: asyncio.Semaphore | None = None
        self._all: set[SMTP] = set()

    def _new_connection(self) -> SMTP:
        s = self.settings
        smtp = SMTP(hostname=s.host, port=s.port, username=s.username, password=s.password,
                    use_tls=s.use_tls, start_tls=s.start_tls, validate_certs=s.validate_certs,
                    timeout=s.timeout)
        self._all.add(smtp)
        return smtp

    async def _discard(self, smtp: SMTP) -> None:
        self._all.discard(smtp)
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (SMTPException, OSError):
                smtp.close()

    async def send(self, message: EmailMessage) -> SendResult:
        """Hand one message to the SMTP server; raises TransientSendError or PermanentSendError."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.pool_size)
        if self.limiter is not None:
            await self.limiter.acquire()
        async with self._slots:
            smtp = self._idle.pop() if self._idle else self._new_connection()
            keep = False
            try:
                if not smtp.is_connected:
                    await smtp.connect()
                # Our bytes, not aiosmtplib's flattening: its SMTP policy refolds every header
                # and turned List-Unsubscribe into encoded words.
                sender, recipients = envelope(message)
                _errors, response = await smtp.sendmail(sender, recipients, wire_bytes(message))
                keep = True
            except SMTPRecipientsRefused as exc:
                keep = True
                codes = [r.code for r in exc.recipients]
                reason = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
                if any(400 <= code < 500 for code in codes):
                    raise TransientSendError(f"smtp: recipients deferred: {reason}") from exc
                raise PermanentSendError(codes[0] if codes else 550, reason) from exc
            except SMTPResponseException as exc:
                keep = exc.code != _CLOSING
                if 400 <= exc.code < 500:
                    raise TransientSendError(f"smtp {exc.code}: {exc.message}") from exc
                raise PermanentSendError(exc.code, exc.message) from exc
            except SMTPNotSupported as exc:
                # e.g. STARTTLS required but not offered: a configuration problem.
                raise PermanentSendError(0, f"smtp: {exc}") from exc
            except (SMTPException, OSError, TimeoutError) as exc:
                # Refused, dropped, timed out: nothing says the server is gone for good.
                raise TransientSendError(f"smtp: {type(exc).__name__}: {exc}") from exc
            finally:
                if keep and smtp.is_connected:
                    self._idle.append(smtp)
                else:
                    await self._discard(smtp)
        match = _QUEUED_AS.search(response)
        return SendResult(provider_id=match.group(1) if match else str(message["Message-ID"]))

    async def aclose(self) -> None:
        """Say QUIT on every open connection."""
        self._idle.clear()
        for smtp in list(self._all):
            await self._discard(smtp)
