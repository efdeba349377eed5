"""Transports: each sender has `async send(message) -> SendResult` and `async aclose()`.

- `TwilioSmsSender` (twilio_sms): SMS through the official SDK's async client.
- `SmtpEmailSender` (smtp_email): e-mail over SMTP with pooled connections.
- `OutboxSender` (outbox): writes messages to a folder; the default of a fresh install.

Failures are `TransientSendError(retry_after)` (try again; `UncertainSendError` when the
provider may have the message: ask it first) or `PermanentSendError(code, reason)` (don't;
`is_opt_out` marks Twilio 21610). `RateLimiter` caps a sender's rate.
"""

from __future__ import annotations

from workers.senders.errors import (
    TWILIO_INVALID_TO,
    TWILIO_UNSUBSCRIBED,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
    UncertainSendError,
)
from workers.senders.messages import SmsMessage
from workers.senders.outbox import OutboxSender
from workers.senders.ratelimit import RateLimiter
from workers.senders.smtp_email import SmtpEmailSender, SmtpSettings
from workers.senders.twilio_sms import TwilioSmsSender

__all__ = [
    "TWILIO_INVALID_TO", "TWILIO_UNSUBSCRIBED", "OutboxSender", "PermanentSendError",
    "RateLimiter", "SendError", "SendResult", "SmsMessage", "SmtpEmailSender", "SmtpSettings",
    "TransientSendError", "TwilioSmsSender", "UncertainSendError",
]
