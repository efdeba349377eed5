"""A provider that answers too late (or drops the connection after the request went out)
may have the message: the next attempt asks it before sending again, so a slow Twilio
never makes an SMS go out twice."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.notifying import drain, sms_for, wired
from tests.test_notifications import NOON_LA, PHONE


async def _sms(pool: asyncpg.Pool) -> dict[str, object]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT state, attempts, uncertain_since IS NOT NULL AS uncertain, provider_id,
                      last_error FROM notifications WHERE channel = 'sms'""")
    return dict(row)


async def test_an_sms_without_an_answer_in_time_is_not_sent_twice(
    aiohttp_client, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,  # type: ignore[no-untyped-def]
    admin: dict[str, str], twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    settings = wired(settings, twilio, smtp).model_copy(update={"twilio_timeout_s": 0.3})
    clock.set(NOON_LA)
    api: TestClient = await aiohttp_client(create_app(settings, clock))
    await api.put("/v1/orders/o-1", json=order(consent={"email": False, "sms": True}),
                  headers=admin)
    await api.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    twilio.state.delay = 1.0  # Twilio records the message, then answers after our timeout
    await drain(settings, clock, pool)
    first = await _sms(pool)
    assert first["state"] == "scheduled" and first["uncertain"] and first["attempts"] == 1
    assert "no answer within" in str(first["last_error"])
    assert len(sms_for(twilio, PHONE)) == 1

    # Twilio is still slow at the retry: the lookup answers in time, and finds the message,
    # although the text would read differently if it were written now.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE orders SET customer_name = 'Ada King'")
    clock.advance(timedelta(minutes=1))
    await drain(settings, clock, pool)
    done = await _sms(pool)
    assert done["state"] == "sent" and not done["uncertain"] and done["attempts"] == 2
    assert done["provider_id"] == twilio.state.messages[0]["sid"]
    assert len(sms_for(twilio, PHONE)) == 1 and twilio.state.duplicates == 0
    assert "Ada Lovelace" in sms_for(twilio, PHONE)[0]


async def test_an_uncertain_send_that_did_not_arrive_is_sent_once(
    aiohttp_client, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,  # type: ignore[no-untyped-def]
    admin: dict[str, str], twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    settings = wired(settings, twilio, smtp)
    clock.set(NOON_LA)
    api: TestClient = await aiohttp_client(create_app(settings, clock))
    await api.put("/v1/orders/o-1", json=order(consent={"email": False, "sms": True}),
                  headers=admin)
    await api.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    await drain(settings, clock, pool)
    async with pool.acquire() as conn:
        # As a timed-out attempt leaves it, a moment ago, with nothing at the provider (yet).
        await conn.execute(
            """UPDATE notifications SET state = 'scheduled', provider_id = NULL,
                      uncertain_since = clock_timestamp() WHERE channel = 'sms'""")
        await conn.execute("INSERT INTO work_items (kind, subject_id, run_after, created_at) "
                           "SELECT 'send_notification', id::text, $1, $1 FROM notifications "
                           "WHERE channel = 'sms'", clock.now())
    twilio.state.reset()
    # Too soon for "not found" to mean anything (the request may still be on its way):
    # asked, not sent.
    await drain(settings, clock, pool)
    waiting = await _sms(pool)
    assert waiting["state"] == "scheduled" and waiting["uncertain"]
    assert waiting["attempts"] == 1  # waiting to ask again is not an attempt
    assert "may still reach the provider" in str(waiting["last_error"])
    assert twilio.state.messages == []
    # Long enough after: not there means not sent.
    async with pool.acquire() as conn:
        await conn.execute("UPDATE notifications SET uncertain_since = uncertain_since "
                           "- interval '1 minute' WHERE channel = 'sms'")
    clock.advance(timedelta(minutes=1))
    await drain(settings, clock, pool)
    done = await _sms(pool)
    assert done["state"] == "sent" and not done["uncertain"]
    assert len(sms_for(twilio, PHONE)) == 1 and twilio.state.duplicates == 0
