"""Real-world feeds (issue 12, part B) end to end: signed deliveries in the senders' own shapes
through the HTTP endpoints into real PostgreSQL, each replayed and shuffled."""

from __future__ import annotations

import asyncio
import copy
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.integrations.pipeline import reprocess
from service.security.api_keys import key_id_of
from service.settings import Settings
from service.store import events as events_db
from service.store import quality as quality_db
from service.tracking import quality
from tests.builders import event, shipment
from tests.integrations.conftest import Post, fixture

TRACKING = "9400110898825022579493"


def _tracker(details: list[dict[str, Any]], *, event_id: str, updated_at: str,
             est: str | None = None) -> bytes:
    body = json.loads(fixture("easypost/tracker_created.json"))
    body["id"] = event_id
    body["result"].update(tracking_details=details, updated_at=updated_at,
                          est_delivery_date=est)
    body["result"]["carrier_detail"]["est_delivery_date_local"] = None
    return json.dumps(body).encode()


def _detail(when: str, status: str, message: str, place: dict[str, Any],
            carrier_code: str | None) -> dict[str, Any]:
    return {"object": "TrackingDetail", "message": message, "description": "", "status": status,
            "status_detail": None, "datetime": when, "source": "USPS",
            "carrier_code": carrier_code,
            "tracking_location": {"object": "TrackingLocation", "city": None, "state": None,
                                  "country": None, "zip": None, **place}}


async def _counters(pool: asyncpg.Pool) -> dict[tuple[str, str, str], int]:
    async with pool.acquire() as conn:
        return {(c.source, c.carrier, c.measure): c.count
                for c in await quality_db.totals(conn)}


async def test_the_same_scan_with_and_without_offset_is_stored_once(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
) -> None:
    await hooks.put("/v1/shipments/s-ep", json=shipment("o-1", TRACKING, carrier="usps"),
                    headers=admin)
    memphis = {"city": "MEMPHIS", "state": "TN", "zip": "38118"}  # a ZIP: the zone is certain
    washington = {"state": "WA", "country": "US"}  # a state only: most of WA, not certain
    nowhere: dict[str, Any] = {}  # no location: the origin's zone (New York), a guess
    naive = _tracker([
        _detail("2026-11-03T04:12:00", "in_transit", "Arrived at facility", memphis, None),
        _detail("2026-11-03T09:30:00", "in_transit", "Departed", washington, None),
        _detail("2026-11-03T22:05:00", "in_transit", "In transit", nowhere, None),
    ], event_id="evt_naive", updated_at="2026-11-04T02:05:00Z")
    # The same three scans as EasyPost sends them once it knows the offsets (and "" for the
    # carrier code it sent as null); Memphis in UTC, the others in their local offset.
    offset = _tracker([
        _detail("2026-11-03T10:12:00Z", "in_transit", "Arrived at facility", memphis, ""),
        _detail("2026-11-03T09:30:00-08:00", "in_transit", "Departed", washington, ""),
        _detail("2026-11-03T22:05:00-05:00", "in_transit", "In transit", nowhere, ""),
    ], event_id="evt_offset", updated_at="2026-11-04T03:00:00Z")
    bodies = [naive, offset] * 2
    random.Random(7).shuffle(bodies)
    for body in bodies:
        assert (await post("easypost", body)).status == 200
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT description, occurred_at, time_basis FROM tracking_events"
                                " ORDER BY occurred_at")
    assert len(rows) == 3, [dict(r) for r in rows]
    assert [r["occurred_at"].isoformat() for r in rows] == [
        "2026-11-03T10:12:00+00:00", "2026-11-03T17:30:00+00:00", "2026-11-04T03:05:00+00:00"]
    # Whichever copy came first is stored; its rule says how its time was found.
    assert {r["time_basis"] for r in rows} <= {"zip", "region", "origin", "offset"}
    shown = await (await hooks.get("/v1/shipments/s-ep", headers=admin)).json()
    assert shown["event_count"] == 3
    counters = await _counters(pool)
    assert counters[("easypost", "usps", "accepted")] == 3
    assert counters[("easypost", "usps", "duplicate")] == 9


async def test_a_trackers_estimate_before_the_shipment_is_kept_newest_by_its_own_time(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock,
) -> None:
    scan = [_detail("2026-11-02T16:00:00Z", "pre_transit", "Label", {}, None)]
    newest = _tracker(scan, event_id="e2", updated_at="2026-11-04T02:05:00Z",
                      est="2026-11-07T00:00:00Z")
    older = _tracker(scan, event_id="e1", updated_at="2026-11-03T02:05:00Z",
                     est="2026-11-05T00:00:00Z")
    # The newer estimate arrives first; the older one late (and everything twice).
    for body in [newest, older, older, newest]:
        answer = await post("easypost", body)
        assert answer.status == 200
        clock.advance(timedelta(seconds=1))
    async with pool.acquire() as conn:
        kept = await conn.fetchrow("SELECT delivery_date, as_of FROM carrier_estimates")
    assert str(kept["delivery_date"]) == "2026-11-07"
    await hooks.put("/v1/shipments/s-ep", json=shipment("o-1", TRACKING, carrier="usps"),
                    headers=admin)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT carrier_estimated_delivery, carrier_estimate_source,"
                                  " carrier_estimate_as_of FROM shipments")
    assert str(row["carrier_estimated_delivery"]) == "2026-11-07"
    assert row["carrier_estimate_source"] == "easypost:est_delivery_date"
    assert row["carrier_estimate_as_of"] == datetime(2026, 11, 4, 2, 5, tzinfo=UTC)
    # An even older estimate after the shipment exists changes nothing either.
    oldest = _tracker(scan, event_id="e0", updated_at="2026-11-02T20:00:00Z",
                      est="2026-11-04T00:00:00Z")
    assert (await post("easypost", oldest)).status == 200
    async with pool.acquire() as conn:
        assert str(await conn.fetchval("SELECT carrier_estimated_delivery FROM shipments")
                   ) == "2026-11-07"
    counters = await _counters(pool)
    assert counters[("easypost", "usps", "estimate_before_shipment")] == 2


async def _shopify(post: Post, name: str | bytes, topic: str, webhook_id: str) -> Any:
    body = name if isinstance(name, bytes) else fixture(f"shopify/{name}.json")
    answer = await post("shopify", body, **{"X-Shopify-Topic": topic,
                                            "X-Shopify-Webhook-Id": webhook_id})
    assert answer.status == 200, await answer.text()
    return await answer.json()


def _fulfillment_event(**changes: Any) -> bytes:
    body = json.loads(fixture("shopify/fulfillment_events_create.json"))
    body.update(changes)
    return json.dumps(body).encode()


async def test_shopify_fulfillment_events_carry_status_and_estimate(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock, settings: Settings,
) -> None:
    # An event for a fulfilment Shopify has not sent us yet: acknowledged, noted, kept.
    early = await _shopify(post, "fulfillment_events_create", "fulfillment_events/create",
                           "ev-1")
    assert early["status"] == "processed" and "not stored yet" in early["notes"][0]
    await _shopify(post, "orders_create", "orders/create", "o-1")
    await _shopify(post, "fulfillments_create", "fulfillments/create", "f-1")
    later = _fulfillment_event(
        id=944956393, status="out_for_delivery", message="Out for delivery",
        happened_at="2026-11-05T08:02:00-08:00", city="San Francisco", province="California",
        zip="94105", updated_at="2026-11-05T08:05:00-08:00",
        estimated_delivery_at="2026-11-05T20:00:00-08:00")
    stale = _fulfillment_event(  # an older revision of the first event's estimate, late
        id=944956394, status="in_transit", message="In transit",
        happened_at="2026-11-02T18:00:00-06:00", updated_at="2026-11-02T18:00:00-06:00",
        estimated_delivery_at="2026-11-09T20:00:00-08:00")
    deliveries = [(later, "ev-2"), (stale, "ev-3")] * 2
    random.Random(2).shuffle(deliveries)
    for body, webhook_id in deliveries:
        await _shopify(post, body, "fulfillment_events/create", webhook_id)
    shown = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
    assert shown["status"] == "out_for_delivery"
    assert [(e["status"], e["raw_code"]) for e in shown["timeline"]] == [
        ("label_created", "label_printed"), ("in_transit", "in_transit"),
        ("out_for_delivery", "out_for_delivery")]
    # The first event (stored only in its delivery) comes in by re-processing, once.
    async with pool.acquire() as conn:
        for _ in range(2):
            report = await reprocess(conn, clock.now(), source="shopify")
            assert report.failed == []
        rows = await conn.fetch("SELECT description FROM tracking_events ORDER BY occurred_at")
        estimate = await conn.fetchrow(
            "SELECT carrier_estimated_delivery AS d, carrier_estimate_source AS s FROM shipments")
    assert [r["description"] for r in rows] == [
        None, "In transit", "Departed from facility", "Out for delivery"]
    # Newest by Shopify's own updated_at: the out-for-delivery event's date.
    assert (str(estimate["d"]), estimate["s"]) == ("2026-11-05", "shopify:estimated_delivery_at")
    counters = await _counters(pool)
    assert counters[("shopify", "", "webhook_notes")] == 1


async def test_an_older_shopify_update_arriving_late_changes_nothing(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock,
) -> None:
    order = json.loads(fixture("shopify/orders_create.json"))
    newer, older = copy.deepcopy(order), copy.deepcopy(order)
    newer.update(updated_at="2026-11-02T10:00:00-05:00", phone="+1 415-555-0101")
    older.update(updated_at="2026-11-01T13:00:00-05:00", phone="+1 415-555-0199")
    for body in (newer, older):
        body["fulfillments"] = []
    fulfillment = json.loads(fixture("shopify/fulfillments_create.json"))
    moved, before = copy.deepcopy(fulfillment), copy.deepcopy(fulfillment)
    moved.update(updated_at="2026-11-02T12:00:00-05:00", tracking_number="1Z9876",
                 tracking_numbers=["1Z9876"])
    before.update(updated_at="2026-11-02T09:30:00-05:00")
    deliveries = [(newer, "orders/updated", "u-2"), (older, "orders/updated", "u-1"),
                  (moved, "fulfillments/update", "f-2"), (before, "fulfillments/update", "f-1")]
    for body, topic, webhook_id in deliveries * 2:  # newest first, the older ones late
        await _shopify(post, json.dumps(body).encode(), topic, webhook_id)
        clock.advance(timedelta(seconds=1))

    async def check() -> None:
        shown = await (await hooks.get("/v1/orders/shopify-820982911946154508",
                                       headers=admin)).json()
        assert shown["customer"]["phone"] == "+14155550101"
        ship = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
        assert ship["tracking_number"] == "1Z9876"

    await check()
    async with pool.acquire() as conn:
        report = await reprocess(conn, clock.now(), source="shopify")
    assert report.failed == []
    await check()


async def test_bad_fulfillment_events_are_refused_and_change_nothing(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
) -> None:
    await (await post("shopify", fixture("shopify/fulfillments_create.json"),
                      **{"X-Shopify-Topic": "fulfillments/create",
                         "X-Shopify-Webhook-Id": "f-1"})).read()
    body = json.loads(fixture("shopify/fulfillment_events_create.json"))
    del body["fulfillment_id"]
    for _ in range(2):
        answer = await post("shopify", json.dumps(body).encode(),
                            **{"X-Shopify-Topic": "fulfillment_events/create",
                               "X-Shopify-Webhook-Id": "bad-1"})
        assert answer.status == 422
        problem = await answer.json()
        assert problem["errors"][0]["field"] == "fulfillment_id"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 1
        assert await conn.fetchval("SELECT count(*) FROM carrier_estimates") == 0
    counters = await _counters(pool)
    assert counters[("shopify", "", "rejected")] == 2


async def test_the_api_feed_is_measured_and_reported_worst_first(
    hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings, make_key: Any,
) -> None:
    good = await make_key("events:write")
    await hooks.put("/v1/shipments/s-1", json=shipment("o-1", "1Z0001"), headers=admin)
    now = clock.now()
    old = (now - timedelta(days=3)).isoformat()
    batch = [event("in_transit", (now - timedelta(hours=1, minutes=i)).isoformat())
             for i in range(20)]
    batch += [event("ZZ_UNMAPPED", old, tracking_number="1Z0002", event_id=f"u{i}")
              for i in range(5)]
    batch.append({"carrier": "ups"})  # rejected: no tracking number
    for _ in range(2):  # the second time every event is a duplicate
        answer = await hooks.post("/v1/tracking-events", json={"events": batch}, headers=good)
        assert answer.status == 202
    # Small requests are written in the background: wait for the counters to land.
    source = f"api:{key_id_of(good['Authorization'].removeprefix('Bearer '))}"
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        counters = await _counters(pool)
        if counters.get((source, "ups", "duplicate")) == 25:
            break
        assert asyncio.get_running_loop().time() < deadline, counters
        await asyncio.sleep(0.05)
    assert counters[(source, "ups", "accepted")] == 25
    assert counters[(source, "ups", "unknown")] == 5
    assert counters[(source, "ups", "late_24h")] == 5
    assert counters[(source, "", "rejected")] == 2
    async with pool.acquire() as conn:
        counted = await quality_db.totals(conn)
        stale = await quality_db.stale_trackers(conn, now + timedelta(days=6), 5)
    report = quality.build(counted, stale, settings)
    worst = report["lines"][0]
    assert (worst["source"], worst["carrier"]) in ((source, "ups"), (source, "*"))
    assert any("unknown_rate 20.0% > 5.0%" in w for w in report["warnings"])
    assert any("late_rate 20.0% > 10.0%" in w for w in report["warnings"])
    assert stale == {"ups": 1}
    text = quality.render(report, "2026-11-01")
    assert text.splitlines()[2] == "WARNINGS"
    metrics = await (await hooks.get("/metrics")).text()
    assert (f'parcelcast_feed_quality_total{{carrier="ups",measure="unknown",source="{source}"}}'
            " 5.0") in metrics


# Either statement ingest stores a batch with (service.store.events): after the batch with a
# resent delivery, the next ones are first tried as all new (0), or claim their keys (20).
@pytest.mark.parametrize("checked_after_duplicate", [0, 20])
async def test_scans_after_a_delivery_scan_are_counted_as_after_delivery(
    hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    make_key: Any, monkeypatch: pytest.MonkeyPatch, checked_after_duplicate: int,
) -> None:
    monkeypatch.setattr(events_db, "CHECKED_AFTER_DUPLICATE", checked_after_duplicate)
    monkeypatch.setattr(events_db, "_recent", events_db._Recent())
    good = await make_key("events:write")
    for n in (1, 2):
        await hooks.put(f"/v1/shipments/s-{n}", json=shipment(f"o-{n}", f"1Z000{n}"),
                        headers=admin)
    now = clock.now()

    def at(hours: float) -> str:
        return (now - timedelta(hours=hours)).isoformat()

    delivered = event("delivered", at(5), tracking_number="1Z0001")
    batches = [
        # The delivery and a scan sent with it: nothing was delivered before them.
        [event("in_transit", at(9), tracking_number="1Z0001"), delivered],
        # After it: a late scan, a resent delivery (a duplicate) and a scan of a parcel on
        # its way (not delivered: not counted).
        [event("in_transit", at(8), tracking_number="1Z0001"), delivered,
         event("in_transit", at(7), tracking_number="1Z0002")],
        [event("out_for_delivery", at(6), tracking_number="1Z0001")],
        # Another delivery scan, earlier than the first: the parcel was delivered before it.
        [event("delivered", at(5.5), tracking_number="1Z0001", description="Left at door")],
    ]
    for batch in batches:
        answer = await hooks.post("/v1/tracking-events", json={"events": batch}, headers=good)
        assert answer.status == 202
        clock.advance(timedelta(minutes=1))
    source = f"api:{key_id_of(good['Authorization'].removeprefix('Bearer '))}"
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        counters = await _counters(pool)
        if counters.get((source, "ups", "accepted")) == 6:
            break
        assert asyncio.get_running_loop().time() < deadline, counters
        await asyncio.sleep(0.05)
    assert counters[(source, "ups", "after_delivery")] == 3
    assert counters[(source, "ups", "duplicate")] == 1
    shown = await (await hooks.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "delivered"


async def test_the_morning_report_from_the_command_line(
    post: Post, pool: asyncpg.Pool, database_url: str, redis_server_url: str,
) -> None:
    from tests.test_cli import _env, run

    bad = json.loads(fixture("easypost/tracker_created.json"))
    bad["result"]["tracking_details"][0]["datetime"] = "2026-13-45T25:00:00"  # noted, not stored
    for body in (fixture("easypost/tracker_created.json"), json.dumps(bad).encode()):
        assert (await post("easypost", body)).status == 200
    env = _env(DATABASE_URL=database_url, REDIS_URL=redis_server_url)
    done = await asyncio.to_thread(run, "data-quality", "--since", "2026-11-01", "--json",
                                   env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    lines = {(ln["source"], ln["carrier"]): ln for ln in report["lines"]}
    usps = lines[("easypost", "usps")]["counts"]
    assert (usps["accepted"], usps["duplicate"], usps["webhook_notes"]) == (2, 1, 1)
    assert usps["estimate_before_shipment"] == 2
    text = await asyncio.to_thread(run, "data-quality", "--since", "2026-11-01", env=env)
    assert text.returncode == 0 and "easypost" in text.stdout and "No warnings." in text.stdout


async def test_events_stored_before_the_upgrade_are_rekeyed_and_not_stored_again(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, database_url: str,
) -> None:
    from alembic import command
    from service.integrations import event_id
    from service.store.migrations import alembic_config, upgrade
    from service.tracking.ingest import id_key

    # The shipment leaves New York: a scan without a location is read in its zone.
    await hooks.put("/v1/shipments/s-ep", json=shipment("o-1", TRACKING, carrier="usps"),
                    headers=admin)
    tracker = fixture("easypost/tracker_updated_in_transit.json")
    assert (await post("easypost", tracker)).status == 200
    # As the code before issue 12 keyed them: the raw datetime text and carrier code as sent.
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, carrier, tracking_number, payload FROM "
                                "tracking_events ORDER BY id")
        for row in rows:
            d = row["payload"]["detail"]
            legacy = event_id("easypost", d["datetime"], d["status"], d["status_detail"],
                              d["message"], d["carrier_code"])
            await conn.execute(
                "UPDATE tracking_events SET carrier_event_id = $2, dedupe_key = $3, "
                "time_basis = NULL WHERE id = $1",
                row["id"], legacy, id_key(row["carrier"], row["tracking_number"], legacy))
        stored = await conn.fetchval("SELECT count(*) FROM tracking_events")
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0006")
    await asyncio.to_thread(upgrade, database_url, "head")
    for n in range(2):  # the next updates resend the whole history: nothing new
        body = json.loads(tracker)
        body["id"] = f"evt_next_{n}"
        answer = await (await post("easypost", json.dumps(body).encode())).json()
        assert answer["events"] == {"accepted": 0, "duplicates": stored}, answer
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == stored
        assert await conn.fetchval(
            "SELECT count(*) FROM tracking_events WHERE time_basis IS NULL") == 0
