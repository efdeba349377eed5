"""A batch that fails is split, and only the row that fails alone is set aside (failed_work),
retried with backoff and never in a loop; every other row gets its work done."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

import workers.refresh
from predictor.model import EtaModel
from service.clock import ManualClock
from service.settings import Settings
from service.store import failed_work
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.models import install_champion
from tests.notifying import drain, wired
from tests.test_notifications import NOON_LA
from workers.isolation import Item, bisect


async def test_bisect_finds_the_item_that_fails_alone() -> None:
    calls: list[int] = []
    poisoned: list[str] = []

    async def run(part: list[Item]) -> None:
        calls.append(len(part))
        if any(subject == "s-7" for _, subject in part):
            raise ValueError("year 10000 is out of range")

    async def on_poison(item: Item, exc: Exception) -> None:
        poisoned.append(item[1])

    items = [(i, f"s-{i}") for i in range(50)]
    done = await bisect(items, run, on_poison)  # type: ignore[arg-type]
    assert poisoned == ["s-7"]
    assert done == [item for item in items if item[1] != "s-7"]
    assert len(calls) <= 2 * math.ceil(math.log2(50)) + 1


async def test_bisect_never_blames_an_item_for_an_outage() -> None:
    poisoned: list[str] = []

    async def run(part: list[Item]) -> None:
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")

    async def on_poison(item: Item, exc: Exception) -> None:
        poisoned.append(item[1])

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await bisect([(1, "s-1"), (2, "s-2")], run, on_poison)  # type: ignore[arg-type]
    assert poisoned == []


async def _work(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT kind, subject_id, state FROM work_items ORDER BY id")
    return [(r["kind"], r["subject_id"], r["state"]) for r in rows]


async def _failing(pool: asyncpg.Pool) -> list[failed_work.FailedWork]:
    async with pool.acquire() as conn:
        return await failed_work.list_failing(conn)


async def _six_shipments(client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
                         clock: ManualClock, eta_model: EtaModel) -> None:
    """A champion model, order o-1 and its shipments s-0..s-5 (tracking 1ZP0000..1ZP0005)."""
    clock.set(NOON_LA)
    async with pool.acquire() as conn:
        await install_champion(conn, eta_model, clock.now())
    await client.put("/v1/orders/o-1", json=order(), headers=admin)
    for i in range(6):
        await client.put(f"/v1/shipments/s-{i}", headers=admin,
                         json=shipment(tracking_number=f"1ZP{i:04d}"))


async def test_a_poison_shipment_is_quarantined_and_the_rest_of_its_batch_refreshed(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, settings: Settings,
    clock: ManualClock, eta_model: EtaModel,
) -> None:
    await _six_shipments(client, admin, pool, clock, eta_model)
    async with pool.acquire() as conn:
        # A promise the pipeline cannot compute with (refused at the edge nowadays; rows
        # stored before, or by other paths, may still carry one).
        await conn.execute("UPDATE shipments SET promised_delivery_date = '9999-12-31' "
                           "WHERE shipment_id = 's-3'")
    await client.post("/v1/tracking-events", headers=admin, json=[
        event("in_transit", "2026-11-03T15:00:00Z", tracking_number=f"1ZP{i:04d}")
        for i in range(6)])
    await drain(settings, clock, pool)

    async with pool.acquire() as conn:
        etas = dict(await conn.fetch("SELECT shipment_id, eta_id IS NOT NULL FROM shipments"))
        statuses = set(await conn.fetchval("SELECT array_agg(DISTINCT status) FROM shipments"))
    assert etas == {f"s-{i}": i != 3 for i in range(6)}
    assert statuses == {"in_transit"}  # derived state is a batch statement: all of them
    [failed] = await _failing(pool)
    assert (failed.kind, failed.subject_id, failed.attempts) == ("refresh_shipment", "s-3", 1)
    assert "OverflowError" in failed.error and "Traceback" in failed.detail
    assert failed.retry_at == NOON_LA + failed_work.RETRY_FIRST
    assert await _work(pool) == [("refresh_shipment", "s-3", "pending")]

    # Not handed over again until its retry time, however often the relay looks.
    await drain(settings, clock, pool)
    assert [f.attempts for f in await _failing(pool)] == [1]
    clock.advance(failed_work.RETRY_FIRST + timedelta(seconds=1))
    await drain(settings, clock, pool)
    [again] = await _failing(pool)
    assert again.attempts == 2 and again.retry_at == clock.now() + 2 * failed_work.RETRY_FIRST

    # `parcelcast work retry ID`: queued for now, whatever the backoff said.
    async with pool.acquire() as conn:
        assert await failed_work.retry_now(conn, again.id, clock.now())
        assert not await failed_work.retry_now(conn, again.id + 1000, clock.now())
    await drain(settings, clock, pool)
    assert [f.attempts for f in await _failing(pool)] == [3]

    # Corrected by the OMS: the refresh goes through and the record goes.
    await client.put("/v1/shipments/s-3", headers=admin,
                     json=shipment(tracking_number="1ZP0003"))
    await drain(settings, clock, pool)
    assert await _failing(pool) == []
    assert await _work(pool) == []
    async with pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT eta_id IS NOT NULL FROM shipments WHERE shipment_id = 's-3'")


async def test_a_shipment_whose_plan_fails_is_quarantined_and_the_others_planned(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, settings: Settings,
    clock: ManualClock, eta_model: EtaModel, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refresh job plans each of its shipments: one whose plan fails is quarantined, and
    every other shipment of the job gets its messages scheduled and its work retired."""
    await _six_shipments(client, admin, pool, clock, eta_model)
    real_plan = workers.refresh.plan

    async def plan(conn: asyncpg.Connection, settings: Settings, shipment: Any,
                   *args: Any, **kwargs: Any) -> list[int]:
        if shipment.shipment_id == "s-3":
            raise KeyError("a rule this plan cannot follow")
        return await real_plan(conn, settings, shipment, *args, **kwargs)

    monkeypatch.setattr(workers.refresh, "plan", plan)
    await client.post("/v1/tracking-events", headers=admin, json=[
        event("in_transit", "2026-11-03T15:00:00Z", tracking_number=f"1ZP{i:04d}")
        for i in range(6)])
    await drain(settings, clock, pool)

    [failed] = await _failing(pool)
    assert (failed.kind, failed.subject_id) == ("refresh_shipment", "s-3")
    assert "KeyError" in failed.error
    assert await _work(pool) == [("refresh_shipment", "s-3", "pending")]
    async with pool.acquire() as conn:
        told = set(await conn.fetchval(
            "SELECT array_agg(DISTINCT shipment_id) FROM notifications WHERE moment = 'shipped'"))
    assert told == {f"s-{i}" for i in range(6) if i != 3}


async def _four_delivered_parcels(api: Any, admin: dict[str, str], prefix: str) -> None:
    """Orders o-0..o-3 (e-mail and SMS consent) with shipments s-0..s-3, all delivered: each
    owes an e-mail and an SMS."""
    for i in range(4):
        await api.put(f"/v1/orders/o-{i}", headers=admin, json=order(customer={
            "email": f"c{i}@example.com", "phone": f"+1415555{i:04d}",
            "timezone": "America/Los_Angeles"}))
        await api.put(f"/v1/shipments/s-{i}", headers=admin,
                      json=shipment(f"o-{i}", f"{prefix}{i:04d}"))
    await api.post("/v1/tracking-events", headers=admin, json=[
        event("delivered", "2026-11-03T19:00:00Z", tracking_number=f"{prefix}{i:04d}")
        for i in range(4)])


async def test_a_poison_notification_is_quarantined_and_the_others_sent(
    aiohttp_client, admin: dict[str, str], pool: asyncpg.Pool, settings: Settings,  # type: ignore[no-untyped-def]
    clock: ManualClock, twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    from service.api.app import create_app

    settings = wired(settings, twilio, smtp)
    clock.set(NOON_LA)
    api = await aiohttp_client(create_app(settings, clock))
    await _four_delivered_parcels(api, admin, "1ZN")
    async with pool.acquire() as conn:
        # Line items the API would refuse: composing this order's messages fails in a way
        # nobody foresaw (planning them does not read the items).
        await conn.execute("""UPDATE orders SET items = '["a mug"]' WHERE order_id = 'o-2'""")
    await drain(settings, clock, pool)
    async with pool.acquire() as conn:
        states = {(r["shipment_id"], r["channel"]): r["state"] for r in await conn.fetch(
            "SELECT shipment_id, channel, state FROM notifications")}
    assert {k: v for k, v in states.items() if k[0] != "s-2"} == {
        (f"s-{i}", ch): "sent" for i in (0, 1, 3) for ch in ("email", "sms")}
    failing = await _failing(pool)
    assert sorted(f.kind for f in failing) == ["send_notification"] * 2
    assert len(twilio.state.messages) == 3 and len(smtp.state.messages) == 3


async def test_a_notification_that_cannot_be_claimed_is_quarantined_and_the_others_sent(
    aiohttp_client, admin: dict[str, str], pool: asyncpg.Pool, settings: Settings,  # type: ignore[no-untyped-def]
    clock: ManualClock, twilio: TwilioStandin, smtp: SmtpStandin,
) -> None:
    """A batch's sends are claimed in one statement; when that fails for something other than
    an outage, each is claimed on its own, and only the one that fails is set aside."""
    from service.api.app import create_app

    settings = wired(settings, twilio, smtp)
    clock.set(NOON_LA)
    api = await aiohttp_client(create_app(settings, clock))
    await _four_delivered_parcels(api, admin, "1ZQ")
    async with pool.acquire() as conn:
        # A failure nobody foresaw, in the database, when s-1's SMS is taken for sending.
        await conn.execute("""
            CREATE FUNCTION poison_claim() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.state = 'sending' AND NEW.shipment_id = 's-1' AND NEW.channel = 'sms'
                THEN RAISE EXCEPTION 'unforeseen'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER poison_claim BEFORE UPDATE ON notifications
                FOR EACH ROW EXECUTE FUNCTION poison_claim();""")
    try:
        await drain(settings, clock, pool)
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TRIGGER poison_claim ON notifications; "
                               "DROP FUNCTION poison_claim()")
    async with pool.acquire() as conn:
        states = {(r["shipment_id"], r["channel"]): r["state"] for r in await conn.fetch(
            "SELECT shipment_id, channel, state FROM notifications")}
    assert states == {**{(f"s-{i}", ch): "sent" for i in range(4) for ch in ("email", "sms")},
                      ("s-1", "sms"): "scheduled"}
    assert [f.kind for f in await _failing(pool)] == ["send_notification"]
    assert len(twilio.state.messages) == 3 and len(smtp.state.messages) == 4
