"""Notifications end to end: API -> outbox -> relay -> arq worker -> real SDKs -> stand-ins."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from msgspec.structs import replace
from twilio.request_validator import RequestValidator

from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from standins.smtp_server import SmtpStandin
from standins.twilio_server import DEFAULT_AUTH_TOKEN, TwilioStandin
from tests.builders import event, order, shipment, stored_shipment
from tests.notifying import PUBLIC, drain, sms_for, subjects, wired
from workers.planning.planner import plan

PHONE = "+14155552671"
# 12:00 in Los Angeles, the customer's zone: outside SMS quiet hours.
NOON_LA = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)


@pytest.fixture
def notify_settings(settings: Settings, twilio: TwilioStandin, smtp: SmtpStandin) -> Settings:
    return wired(settings, twilio, smtp)


@pytest.fixture
async def api(aiohttp_client, notify_settings: Settings, clock: ManualClock,  # type: ignore[no-untyped-def]
              pool: asyncpg.Pool) -> TestClient:
    clock.set(NOON_LA)
    return await aiohttp_client(create_app(notify_settings, clock))


async def _shop(api: TestClient, admin: dict[str, str], **order_fields: object) -> None:
    await api.put("/v1/orders/o-1", json=order(**order_fields), headers=admin)
    await api.put("/v1/shipments/s-1", json=shipment(), headers=admin)


async def _eta_past_the_promise(pool: asyncpg.Pool) -> None:
    """An ETA window (Nov 7-10) after the promised Nov 6, written as the predictor would."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE shipments SET eta_p10 = $1, eta_p50 = $2, eta_p90 = $3",
            datetime(2026, 11, 7, 18, tzinfo=UTC), datetime(2026, 11, 9, 20, tzinfo=UTC),
            datetime(2026, 11, 10, 20, tzinfo=UTC))


async def _states(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT moment, channel, state FROM notifications ORDER BY id")
    return [(r["moment"], r["channel"], r["state"]) for r in rows]


async def test_fifty_duplicate_out_for_delivery_scans_send_one_sms_and_one_email(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin)
    scan = event("out_for_delivery", "2026-11-03T15:40:00Z", event_id="ofd-1")
    await asyncio.gather(*(api.post("/v1/tracking-events", json=scan, headers=admin)
                           for _ in range(25)))
    await drain(notify_settings, clock, pool)
    for _ in range(25):
        await api.post("/v1/tracking-events", json=scan, headers=admin)
    await drain(notify_settings, clock, pool)
    assert len(sms_for(twilio, PHONE)) == 1
    assert len(smtp.state.messages) == 1
    assert twilio.state.duplicates == 0 and smtp.state.duplicates == 0
    assert sorted(await _states(pool)) == [("out_for_delivery", "email", "sent"),
                                           ("out_for_delivery", "sms", "sent")]
    email = smtp.state.messages[0]
    assert email["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert PUBLIC in email["list_unsubscribe"]


async def test_a_provider_failing_three_times_then_recovering_sends_once(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin)
    twilio.state.fail_next, twilio.state.fail_status = 3, 500
    smtp.state.control(3, 451)
    await api.post("/v1/tracking-events", json=event("out_for_delivery", "2026-11-03T15:40:00Z"),
                   headers=admin)
    for _ in range(5):
        await drain(notify_settings, clock, pool)
        clock.advance(timedelta(minutes=5))
    assert twilio.state.failed == 3 and smtp.state.failed == 3
    assert len(sms_for(twilio, PHONE)) == 1 and len(smtp.state.messages) == 1
    async with pool.acquire() as conn:
        attempts = await conn.fetchval("SELECT array_agg(attempts) FROM notifications")
    assert attempts == [4, 4]


async def test_exhausted_retries_land_in_dead_letter_and_can_be_retried(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    settings = notify_settings.model_copy(update={"send_max_attempts": 2})
    await _shop(api, admin, consent={"email": False, "sms": True})
    twilio.state.fail_next = 100
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    for _ in range(3):
        await drain(settings, clock, pool)
        clock.advance(timedelta(hours=1))
    assert await _states(pool) == [("delivered", "sms", "dead")]
    from service.store import notifications as notifications_db

    async with pool.acquire() as conn:
        failed = await notifications_db.list_failed(conn)
        assert [f.moment for f in failed] == ["delivered"]
        twilio.state.fail_next = 0
        assert await notifications_db.retry(conn, failed[0].id, clock.now())
    await drain(settings, clock, pool)
    assert await _states(pool) == [("delivered", "sms", "sent")]
    assert len(sms_for(twilio, PHONE)) == 1


async def test_permanent_failures_do_not_retry_and_21610_records_the_opt_out(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    await _shop(api, admin, consent={"email": False, "sms": True})
    twilio.state.unsubscribed_numbers = {PHONE}
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert await _states(pool) == []  # "shipped" is e-mail only by default
    await api.post("/v1/tracking-events", json=event("out_for_delivery", "2026-11-03T15:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert await _states(pool) == [("out_for_delivery", "sms", "failed")]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT source FROM opt_outs WHERE address = $1",
                                   PHONE) == "provider"
    twilio.state.unsubscribed_numbers = set()
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert ("delivered", "sms", "suppressed") in await _states(pool)
    assert sms_for(twilio, PHONE) == []


def _signed(url: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(
        url, form)}


async def test_stop_reply_opts_out_and_start_opts_back_in(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin)
    url = f"{PUBLIC}/v1/webhooks/twilio/inbound"
    stop = {"From": PHONE, "Body": "Stop", "MessageSid": "SMx"}
    forged = await api.post("/v1/webhooks/twilio/inbound", data=stop,
                            headers={"X-Twilio-Signature": "bm9wZQ=="})
    assert forged.status == 401
    unsigned = await api.post("/v1/webhooks/twilio/inbound", data=stop)
    assert unsigned.status == 401
    answer = await api.post("/v1/webhooks/twilio/inbound", data=stop, headers=_signed(url, stop))
    assert answer.status == 200 and "<Response" in await answer.text()
    await api.post("/v1/tracking-events", json=event("out_for_delivery", "2026-11-03T15:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert sms_for(twilio, PHONE) == []
    assert len(smtp.state.messages) == 1  # e-mail is another channel
    help_form = {"From": PHONE, "Body": "HELP"}
    helped = await api.post("/v1/webhooks/twilio/inbound", data=help_form,
                            headers=_signed(url, help_form))
    assert "STOP" in await helped.text()
    start = {"From": PHONE, "Body": "START"}
    await api.post("/v1/webhooks/twilio/inbound", data=start, headers=_signed(url, start))
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert len(sms_for(twilio, PHONE)) == 1


async def test_status_callback_is_recorded(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    await _shop(api, admin, consent={"email": False, "sms": True})
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    sid = twilio.state.messages[0]["sid"]
    callback = twilio.state.messages[0]["status_callback"]
    assert callback.startswith(f"{PUBLIC}/v1/webhooks/twilio/status")
    form = {"MessageSid": sid, "MessageStatus": "delivered"}
    path = callback.removeprefix(PUBLIC)
    answer = await api.post(path, data=form, headers=_signed(callback, form))
    assert answer.status == 204
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT provider_status FROM notifications") == "delivered"


async def test_email_unsubscribe_link_stops_email(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin, consent={"email": True, "sms": False})
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    link = re.search(r"<(https://[^>]+)>", smtp.state.messages[0]["list_unsubscribe"])[1]
    path = link.removeprefix(PUBLIC)
    page = await api.get(path)
    assert page.status == 200 and "Unsubscribe" in await page.text()
    assert (await api.get(path[:-3] + "xyz")).status == 404
    done = await api.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status == 200
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert subjects(smtp) == subjects(smtp)[:1]


async def test_an_sms_due_at_night_goes_out_at_eight_and_newer_news_replaces_it(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    await _shop(api, admin, consent={"email": False, "sms": True})
    clock.set(datetime(2026, 11, 4, 7, 0, tzinfo=UTC))  # 23:00 in Los Angeles
    await api.post("/v1/tracking-events", json=event("out_for_delivery", "2026-11-04T06:55:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert sms_for(twilio, PHONE) == []
    async with pool.acquire() as conn:
        due = await conn.fetchval("SELECT due_at FROM notifications")
    assert due == datetime(2026, 11, 4, 16, 0, tzinfo=UTC)  # 08:00 PST
    clock.set(datetime(2026, 11, 4, 7, 30, tzinfo=UTC))
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-04T07:25:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert sms_for(twilio, PHONE) == []
    clock.set(datetime(2026, 11, 4, 16, 1, tzinfo=UTC))
    await drain(notify_settings, clock, pool)
    sent = sms_for(twilio, PHONE)
    assert len(sent) == 1
    assert await _states(pool) == [("out_for_delivery", "sms", "superseded"),
                                   ("delivered", "sms", "sent")]


async def test_a_predicted_delay_is_announced_before_the_promised_date(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, smtp: SmtpStandin,
) -> None:
    """With an ETA past the promise (here written as the predictor would), the customer is
    told on the day of the scan, days before the promised 2026-11-06."""
    await _shop(api, admin, consent={"email": True, "sms": False})
    await _eta_past_the_promise(pool)
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    moments = [m for m, _, s in await _states(pool) if s == "sent"]
    assert "predicted_delay" in moments
    assert clock.now().date() < datetime(2026, 11, 6).date()


async def test_stalled_and_missed_promise_come_from_the_sweep(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, smtp: SmtpStandin,
) -> None:
    from workers.sweeps import sweep_once

    await _shop(api, admin, consent={"email": True, "sms": False})
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    clock.set(datetime(2026, 11, 6, 20, tzinfo=UTC))  # > 48 business hours without a scan
    assert await sweep_once(pool, clock) == 1
    await drain(notify_settings, clock, pool)
    clock.set(datetime(2026, 11, 7, 20, tzinfo=UTC))  # the promise (Nov 6) has passed
    await sweep_once(pool, clock)
    await drain(notify_settings, clock, pool)
    assert [m for m, _, _ in await _states(pool)] == ["shipped", "stalled", "missed_promise"]
    await sweep_once(pool, clock)
    await drain(notify_settings, clock, pool)
    assert len(smtp.state.messages) == 3


async def test_a_shipment_the_planner_declines_is_not_refreshed_on_every_sweep(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock,
) -> None:
    """No order (so nobody to tell): past its promise the sweep refreshes it once, then
    again only an hour later, not on every sweep."""
    from workers.sweeps import sweep_once

    await api.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    clock.set(datetime(2026, 11, 7, 20, tzinfo=UTC))  # stalled and past the Nov 6 promise
    assert await sweep_once(pool, clock) == 1
    await drain(notify_settings, clock, pool)
    assert await _states(pool) == []
    clock.set(clock.now() + timedelta(minutes=20))
    assert await sweep_once(pool, clock) == 0
    clock.set(clock.now() + timedelta(minutes=50))
    assert await sweep_once(pool, clock) == 1


async def test_a_delay_sms_held_overnight_past_the_promise_is_not_sent(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    """Quiet hours can push a delay warning past the promise: then it is too late to warn."""
    await _shop(api, admin, consent={"email": False, "sms": True})
    await _eta_past_the_promise(pool)
    clock.set(datetime(2026, 11, 7, 5, 30, tzinfo=UTC))  # 21:30 on Nov 6 (the promise) in LA
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-07T05:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert ("predicted_delay", "sms", "scheduled") in await _states(pool)
    clock.set(datetime(2026, 11, 7, 16, 1, tzinfo=UTC))  # 08:01 on Nov 7 in LA
    await drain(notify_settings, clock, pool)
    assert ("predicted_delay", "sms", "suppressed") in await _states(pool)
    assert sms_for(twilio, PHONE) == []


def _email_text(smtp: SmtpStandin, subject_part: str) -> str:
    """The plain-text part of the first e-mail whose subject contains `subject_part`."""
    import email
    from email.policy import default

    for raw in smtp.state.raw:
        message = email.message_from_bytes(raw, policy=default)
        if subject_part.lower() in str(message["Subject"]).lower():
            part = message.get_body(preferencelist=("plain",))
            assert part is not None
            return str(part.get_content())
    raise AssertionError(f"no e-mail about {subject_part!r}: {subjects(smtp)}")


async def test_a_delay_message_names_the_window_the_customer_was_told_before(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin, consent={"email": True, "sms": False})
    async with pool.acquire() as conn:  # the first window shown: Nov 4-5 (Los Angeles)
        await conn.execute(
            """INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage,
                                          eta_p10, eta_p50, eta_p90, prob_late, reasons)
               VALUES ('s-1', $1, 'm1', 'label', $2, $2, $3, 0.1, '[]')""",
            clock.now() - timedelta(hours=2), datetime(2026, 11, 4, 20, tzinfo=UTC),
            datetime(2026, 11, 5, 20, tzinfo=UTC))
    await _eta_past_the_promise(pool)
    await api.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    text = _email_text(smtp, "later than expected")
    assert "Previous estimate" in text and "Nov 4" in text and "Nov 7" in text


async def test_a_parcel_at_a_pickup_point_says_until_when(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, smtp: SmtpStandin,
) -> None:
    await _shop(api, admin, consent={"email": True, "sms": False})
    await api.post("/v1/tracking-events", json=event("available_for_pickup",
                                                     "2026-11-03T18:00:00Z"), headers=admin)
    await drain(notify_settings, clock, pool)
    # UPS holds a parcel 7 days (PICKUP_HOLD_DAYS): picked up by Tuesday, November 10.
    assert "November 10" in _email_text(smtp, "pick")


async def test_a_customer_abroad_without_an_order_zone_gets_their_own_quiet_hours(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock, twilio: TwilioStandin,
) -> None:
    """08:30 in Berlin is 07:30 UTC: no order zone, a German address, so the SMS goes now
    (with UTC as the customer's zone it would wait until 08:00 UTC)."""
    customer = {"email": "ada@example.com", "phone": PHONE, "locale": "de"}
    await api.put("/v1/orders/o-1", json=order(customer=customer,
                                               consent={"email": False, "sms": True}),
                  headers=admin)
    await api.put("/v1/shipments/s-1", json=shipment(
        destination={"postal_code": "10115", "country": "DE"}), headers=admin)
    clock.set(datetime(2026, 11, 4, 7, 30, tzinfo=UTC))
    await api.post("/v1/tracking-events", json=event("out_for_delivery", "2026-11-04T07:20:00Z"),
                   headers=admin)
    await drain(notify_settings, clock, pool)
    assert len(sms_for(twilio, PHONE)) == 1


async def test_a_waiting_out_for_delivery_sms_is_not_replaced_by_an_eta_revision(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool, notify_settings: Settings,
    clock: ManualClock,
) -> None:
    # Out for delivery at night: its SMS waits for 08:00. A refresh then confirms a new date
    # (an ETA revision, e-mail only): the milestone is still the news, so its SMS must not be
    # superseded by the revision (a drill saw customers never told "out for delivery").
    await _shop(api, admin, consent={"email": True, "sms": True})
    now = datetime(2026, 11, 4, 7, 0, tzinfo=UTC)  # 23:00 in Los Angeles
    ofd = stored_shipment(status="out_for_delivery", status_rank=6, first_scan_at=now,
                          shown_date=date(2026, 11, 5), pending_date=date(2026, 11, 6),
                          eta_p90=datetime(2026, 11, 6, 20, tzinfo=UTC))
    async with pool.acquire() as conn:
        first = await plan(conn, notify_settings, replace(ofd, pending_date=None,
                                                          eta_p90=None), now)
        assert first
        assert await plan(conn, notify_settings, ofd, now + timedelta(minutes=5))
    states = await _states(pool)
    assert ("eta_revised", "email", "scheduled") in states
    assert ("out_for_delivery", "sms", "scheduled") in states, states
    # A newer milestone still replaces the waiting one.
    async with pool.acquire() as conn:
        await plan(conn, notify_settings, replace(ofd, status="delivered", status_rank=9,
                                                  eta_p90=None), now + timedelta(minutes=9))
    states = await _states(pool)
    assert ("out_for_delivery", "sms", "superseded") in states
    assert ("delivered", "sms", "scheduled") in states
