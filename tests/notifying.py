"""Helpers for notification tests: stand-ins wired into settings, and running the pipeline."""

from __future__ import annotations

import asyncpg
from pydantic import AnyUrl

from service.clock import ManualClock
from service.settings import Settings
from service.store.redis import arq_client
from standins.smtp_server import SmtpStandin
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioStandin
from workers.main import run_worker
from workers.relay import Relay

PUBLIC = "https://track.example"


def wired(settings: Settings, twilio: TwilioStandin, smtp: SmtpStandin) -> Settings:
    return settings.model_copy(update={
        "email_transport": "smtp", "smtp_port": smtp.port, "sms_transport": "twilio",
        "twilio_base_url": AnyUrl(twilio.base_url), "twilio_account_sid": DEFAULT_ACCOUNT_SID,
        "twilio_auth_token": DEFAULT_AUTH_TOKEN, "public_base_url": AnyUrl(PUBLIC),
        "send_lease_s": 0.5,
    })


async def drain(settings: Settings, clock: ManualClock, pool: asyncpg.Pool) -> None:
    """Hand every due work item to arq and run a burst worker, until nothing is due."""
    redis = arq_client(settings.redis_url or "", settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=settings.parcelcast_stale_after_s)
    try:
        for _ in range(20):
            if await relay.handoff_once() == 0:
                return
            await run_worker(settings, clock, burst=True, relay=False)
    finally:
        await redis.aclose()


def sms_for(twilio: TwilioStandin, to: str) -> list[str]:
    return [m["body"] for m in twilio.state.messages if m["to"] == to]


def subjects(smtp: SmtpStandin) -> list[str]:
    return [m["subject"] for m in smtp.state.messages]
