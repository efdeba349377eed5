"""The senders a worker uses, chosen by settings, and their per-process rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from service.settings import Settings
from workers.senders.errors import SendResult
from workers.senders.messages import SmsMessage
from workers.senders.outbox import OutboxSender
from workers.senders.smtp_email import SmtpEmailSender, SmtpSettings
from workers.senders.twilio_sms import TwilioSmsSender


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> SendResult: ...
    async def aclose(self) -> None: ...


class SmsSender(Protocol):
    async def send(self, message: SmsMessage) -> SendResult: ...
    async def aclose(self) -> None: ...


@dataclass
class Transports:
    email: EmailSender
    sms: SmsSender

    async def aclose(self) -> None:
        await self.email.aclose()
        await self.sms.aclose()


def build_transports(settings: Settings) -> Transports:
    outbox = OutboxSender(settings.data_dir / "outbox")
    email: EmailSender = outbox
    sms: SmsSender = outbox
    if settings.email_transport == "smtp":
        email = SmtpEmailSender(
            SmtpSettings(host=settings.smtp_host, port=settings.smtp_port,
                         username=settings.smtp_username, password=settings.smtp_password,
                         use_tls=settings.smtp_tls,
                         start_tls=True if settings.smtp_starttls else False),
            rate_limit=settings.email_per_second,
        )
    if settings.sms_transport == "twilio":
        sms = TwilioSmsSender(
            settings.twilio_account_sid, settings.twilio_auth_token,
            from_number=settings.twilio_from_number,
            base_url=str(settings.twilio_base_url) if settings.twilio_base_url else None,
            timeout=settings.twilio_timeout_s, rate_limit=settings.sms_per_second,
        )
    return Transports(email, sms)
