"""A shop with one customer, her shipment, its scans, two ETAs and messages in every state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.eta.reasons import describe
from service.eta.runtime import Prediction
from service.store import etas
from tests.builders import event, order, shipment

LABEL = datetime(2026, 11, 2, 9, tzinfo=UTC)
FIRST_ETA_AT = datetime(2026, 11, 2, 15, tzinfo=UTC)
SCAN_AT = datetime(2026, 11, 3, 10, tzinfo=UTC)
SECOND_ETA_AT = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 8, 18, tzinfo=UTC)  # two days past the promise (Nov 6)
ROW = {"carrier": "ups", "service_level": "ground", "destination_state": "CA",
       "latest_status": "in_transit"}


def prediction(stage: str, p10: datetime, days: tuple[float, float, float], late: float,
               reasons: list[tuple[str, float]]) -> Prediction:
    p10_, p50, p90 = (p10 + timedelta(days=d) for d in days)
    return Prediction(stage, p10_, p50, p90, late,
                      [{"reason": describe(f, h, ROW), "hours": h} for f, h in reasons])


async def _notifications(pool: asyncpg.Pool) -> None:
    """One message in each state an agent may meet."""
    rows = [  # moment, key, channel, state, due, attempts, error, provider id, sent
        ("shipped", "", "email", "sent", SCAN_AT, 1, None, "Q1", SCAN_AT),
        ("shipped", "", "sms", "superseded", SCAN_AT, 0, None, None, None),
        ("predicted_delay", "", "email", "dead", SECOND_ETA_AT, 8, "smtp 451: busy", None,
         None),
        ("predicted_delay", "", "sms", "suppressed", SECOND_ETA_AT, 1, "opted out", None, None),
        ("missed_promise", "", "email", "failed", NOW, 1, "smtp 550: mailbox unavailable",
         None, None),
        ("missed_promise", "", "sms", "scheduled", NOW + timedelta(hours=9), 0, None, None,
         None),
        ("eta_revised", "2026-11-09", "email", "scheduled", NOW + timedelta(minutes=5), 2,
         "smtp: ConnectionRefusedError", None, None),
    ]
    async with pool.acquire() as conn:
        for moment, key, channel, state, due, attempts, error, provider, sent in rows:
            recipient = "ada@example.com" if channel == "email" else "+14155552671"
            await conn.execute(
                """INSERT INTO notifications (shipment_id, order_id, moment, moment_key, channel,
                       recipient, locale, state, due_at, attempts, last_error, provider_id,
                       sent_at, subject, created_at, updated_at)
                   VALUES ('s-1', 'o-1', $1, $2, $3, $4, 'en', $5, $6, $7, $8, $9, $10,
                           $11, $12, $12)""",
                moment, key, channel, recipient, state, due, attempts, error, provider, sent,
                "Shipped" if sent else None, min(due, NOW))


@pytest.fixture
async def shop(client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
               clock: ManualClock) -> TestClient:
    """Ada's order o-1 and UPS shipment s-1 (promised Nov 6), one scan, two ETAs (the second
    after the scan, past the promise) and seven messages; the clock at Nov 8."""
    clock.set(LABEL)
    await client.put("/v1/orders/o-1", json=order(), headers=admin)
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    async with pool.acquire() as conn:
        await etas.store_many(conn, ["s-1"], FIRST_ETA_AT, "m-1", [prediction(
            "label", FIRST_ETA_AT, (2.5, 3.0, 3.6), 0.2,
            [("carrier", -3.0), ("hours_to_promise", 5.25), ("n_scans", 0.2)])])
    clock.set(SCAN_AT + timedelta(hours=1))
    await client.post("/v1/tracking-events", headers=admin, json=event(
        "in_transit", SCAN_AT.isoformat(), description="Departed facility"))
    async with pool.acquire() as conn:
        await etas.store_many(conn, ["s-1"], SECOND_ETA_AT, "m-1", [prediction(
            "first_scan", SECOND_ETA_AT, (3.0, 4.0, 5.5), 0.81,
            [("hours_since_last_scan", -4.0), ("hours_to_promise", 12.0),
             ("latest_status", 2.0)])])
    await _notifications(pool)
    clock.set(NOW)
    return client
