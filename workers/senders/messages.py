"""The SMS a sender is handed (e-mails travel as `email.message.EmailMessage`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One SMS to send. `notification_id` identifies it across retries (idempotency)."""

    notification_id: str
    to: str          # E.164, e.g. "+14155550123"
    body: str
    status_callback: str | None = None  # where the provider reports delivery
