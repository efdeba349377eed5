"""The rules of ingestion, against real PostgreSQL."""

from __future__ import annotations

import random

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.builders import event, order, shipment

SCANS = [
    event("label_created", "2026-11-02T09:00:00Z"),
    event("in_transit", "2026-11-02T22:10:00Z", description="Origin scan"),
    event("in_transit", "2026-11-03T08:00:00-05:00", description="Departed facility"),
    event("out_for_delivery", "2026-11-05T07:40:00-08:00"),
    event("delivered", "2026-11-05T13:02:00-08:00"),
]


async def _setup(client: TestClient, headers: dict[str, str]) -> None:
    assert (await client.put("/v1/orders/o-1", json=order(), headers=headers)).status == 201
    assert (await client.put("/v1/shipments/s-1", json=shipment(), headers=headers)).status == 201


async def test_same_event_fifty_times_is_stored_once(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    await _setup(client, admin)
    scan = event("in_transit", "2026-11-03T10:00:00Z")
    first = await client.post("/v1/tracking-events", json=scan, headers=admin)
    assert (await first.json())["accepted"] == 1
    batch = await client.post("/v1/tracking-events", json={"events": [scan] * 49}, headers=admin)
    assert await batch.json() == {"accepted": 0, "duplicates": 49, "rejected": 0, "errors": []}
    # The same scan written with another offset is the same instant: still a duplicate.
    shifted = dict(scan, occurred_at="2026-11-03T05:00:00-05:00")
    again = await client.post("/v1/tracking-events", json=shifted, headers=admin)
    assert (await again.json())["duplicates"] == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 1
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert len(shown["timeline"]) == 1 and shown["event_count"] == 1


async def test_carrier_event_id_dedupes_even_when_details_change(
    client: TestClient, admin: dict[str, str]
) -> None:
    await _setup(client, admin)
    one = event("in_transit", "2026-11-03T10:00:00Z", event_id="evt-77")
    resent = dict(one, description="Arrived at facility (corrected)")
    await client.post("/v1/tracking-events", json=one, headers=admin)
    answer = await (await client.post("/v1/tracking-events", json=resent, headers=admin)).json()
    assert answer["duplicates"] == 1 and answer["accepted"] == 0


async def test_shuffled_events_give_the_timeline_and_status_of_occurred_at(
    client: TestClient, admin: dict[str, str]
) -> None:
    await _setup(client, admin)
    shuffled = SCANS * 3
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 4):
        await client.post("/v1/tracking-events", json=shuffled[start:start + 4], headers=admin)
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "delivered"
    assert shown["delivered_at"] == "2026-11-05T21:02:00Z"
    assert [e["status"] for e in shown["timeline"]] == [e["status"] for e in SCANS]
    assert [e["occurred_at"] for e in shown["timeline"]] == sorted(
        e["occurred_at"] for e in shown["timeline"])


async def test_late_in_transit_never_undelivers(client: TestClient, admin: dict[str, str]) -> None:
    await _setup(client, admin)
    await client.post("/v1/tracking-events", json=SCANS[-1], headers=admin)
    # An earlier scan arriving late, and a clock-skewed one stamped after delivery.
    late = [event("in_transit", "2026-11-04T10:00:00Z"),
            event("out_for_delivery", "2026-11-06T10:00:00Z")]
    answer = await (await client.post("/v1/tracking-events", json=late, headers=admin)).json()
    assert answer["accepted"] == 2
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "delivered"
    assert len(shown["timeline"]) == 3


async def test_events_before_the_shipment_are_kept_and_attached(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    early = await client.post("/v1/tracking-events", json=SCANS[:4], headers=admin)
    assert early.status == 202 and (await early.json())["accepted"] == 4
    await _setup(client, admin)
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "out_for_delivery"
    assert len(shown["timeline"]) == 4
    async with pool.acquire() as conn:
        queued = await conn.fetchval(
            "SELECT count(*) FROM work_items WHERE subject_id = 's-1' AND state = 'pending'")
    assert queued == 1


async def test_times_are_stored_in_utc_and_naive_ones_rejected(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    await _setup(client, admin)
    naive = await client.post(
        "/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00"), headers=admin)
    assert naive.status == 422
    problem = await naive.json()
    assert problem["errors"][0]["field"] == "occurred_at"
    assert "timezone" in problem["errors"][0]["message"]
    ok = await client.post(
        "/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00+09:00"), headers=admin)
    assert ok.status == 202
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["timeline"][0]["occurred_at"] == "2026-11-03T01:00:00Z"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 1


async def test_batch_reports_each_rejected_item_and_keeps_the_good_ones(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    await _setup(client, admin)
    batch = [
        event("in_transit", "2026-11-03T10:00:00Z"),
        event("in_transit", "2026-11-03T11:00:00Z", carrier="pony-express"),
        event("in_transit", "yesterday"),
        {"carrier": "ups"},
        "not an object",
        event("D", "2026-11-04T11:00:00Z"),  # a raw UPS code
    ]
    answer = await client.post("/v1/tracking-events", json={"events": batch}, headers=admin)
    assert answer.status == 202
    body = await answer.json()
    # Any carrier is tracked: one we do not list is kept as other:<slug>.
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (3, 0, 3)
    by_index = {item["index"]: item["errors"] for item in body["errors"]}
    assert 1 not in by_index
    assert by_index[2][0]["field"] == "events.2.occurred_at"
    assert by_index[3][0]["field"] == "events.3"
    assert "tracking_number" in by_index[3][0]["message"]
    assert by_index[4][0]["field"] == "events.4"
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "delivered"
    assert shown["timeline"][-1]["raw_code"] == "D"


async def test_unknown_raw_codes_are_kept_and_do_not_change_status(
    client: TestClient, admin: dict[str, str]
) -> None:
    await _setup(client, admin)
    await client.post("/v1/tracking-events", json=SCANS[1], headers=admin)
    await client.post("/v1/tracking-events",
                      json=event("ZZ9", "2026-11-04T00:00:00Z", description="Weird scan"),
                      headers=admin)
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["status"] == "in_transit"
    assert shown["timeline"][-1]["status"] == "unknown"
    assert shown["timeline"][-1]["raw_code"] == "ZZ9"
    metrics = await (await client.get("/metrics")).text()
    assert 'parcelcast_unknown_status_events_total{carrier="ups"} 1.0' in metrics


async def test_batch_limits(client: TestClient, admin: dict[str, str], pool: asyncpg.Pool) -> None:
    too_many = [event("in_transit", f"2026-11-03T10:00:{i % 60:02d}Z") for i in range(1001)]
    answer = await client.post("/v1/tracking-events", json=too_many, headers=admin)
    assert answer.status == 422
    assert (await answer.json())["errors"][0]["field"] == "events"
    empty = await client.post("/v1/tracking-events", json={"events": []}, headers=admin)
    assert empty.status == 422
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 0


async def test_a_full_batch_of_1000_is_accepted(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    batch = [event("in_transit", f"2026-11-03T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
                   tracking_number=f"T{i % 50}") for i in range(1000)]
    answer = await client.post("/v1/tracking-events", json=batch, headers=admin)
    assert (await answer.json())["accepted"] == 1000
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 1000


async def test_concurrent_copies_of_one_event_are_accepted_once(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """Fifty requests racing with the same scan: one is new, forty-nine are duplicates."""
    import asyncio

    await _setup(client, admin)
    scan = event("out_for_delivery", "2026-11-05T07:40:00-08:00")

    async def push() -> dict[str, int]:
        answer = await client.post("/v1/tracking-events", json=scan, headers=admin)
        assert answer.status == 202
        return await answer.json()  # type: ignore[no-any-return]

    answers = await asyncio.gather(*(push() for _ in range(50)))
    assert sum(a["accepted"] for a in answers) == 1
    assert sum(a["duplicates"] for a in answers) == 49
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 1
        assert await conn.fetchval("SELECT status FROM shipments") == "out_for_delivery"


async def test_a_scan_carries_the_carriers_estimate_newest_first(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """The carrier's estimated delivery date rides on a scan; a later scan's replaces it, an
    older or replayed one never moves it back, a malformed one is refused naming the field."""
    await _setup(client, admin)
    newer = event("in_transit", "2026-11-03T10:00:00Z", estimated_delivery="2026-11-07")
    older = event("in_transit", "2026-11-02T22:00:00Z", estimated_delivery="2026-11-05")
    for body in (newer, older, newer):
        assert (await client.post("/v1/tracking-events", json=body, headers=admin)).status == 202
    answer = await client.get("/v1/shipments/s-1", headers=admin)
    assert (await answer.json())["carrier_estimate"] == {"date": "2026-11-07",
                                                          "source": "tracking_event"}
    bad = await client.post("/v1/tracking-events", headers=admin, json=event(
        "in_transit", "2026-11-04T10:00:00Z", estimated_delivery="next week"))
    assert bad.status == 422
    assert "estimated_delivery" in str(await bad.json())
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT carrier_estimated_delivery FROM shipments")
        assert stored.isoformat() == "2026-11-07"
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 2


async def test_a_batch_over_neighbouring_shipments_keeps_them_on_their_pages(
    client: TestClient[web.Request, web.Application], admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """Shipments created together share pages and one batch updates all of them: each page
    has room for the new versions (migration 0014), so no row moves and no index grows."""
    from datetime import UTC, datetime

    label = datetime(2026, 11, 2, 9, tzinfo=UTC)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "shipments",
            columns=["shipment_id", "order_id", "carrier", "service_level", "tracking_number",
                     "label_created_at", "created_at", "updated_at"],
            records=[(f"s{n}", f"o{n}", "ups", "ground", f"BT{n:05d}", label, label, label)
                     for n in range(300)])
        before = dict(await conn.fetch(
            "SELECT shipment_id, (ctid::text::point)[0] AS page FROM shipments"))
    batch = [event("in_transit", "2026-11-03T10:00:00Z", tracking_number=f"BT{n:05d}")
             for n in range(300)]
    answer = await client.post("/v1/tracking-events", json=batch, headers=admin)
    assert (await answer.json())["accepted"] == 300
    async with pool.acquire() as conn:
        after = dict(await conn.fetch(
            "SELECT shipment_id, (ctid::text::point)[0] AS page FROM shipments "
            "WHERE status = 'in_transit'"))
    assert len(after) == 300
    assert after == before


async def _shipments(client: TestClient[web.Request, web.Application], headers: dict[str, str],
                     count: int) -> None:
    for n in range(count):
        assert (await client.put(f"/v1/shipments/s-{n}", json=shipment(
            "o-1", tracking_number=f"1ZMIX{n}"), headers=headers)).status == 201


async def test_a_batch_of_stored_and_new_events_stores_the_new_ones_once(
    client: TestClient[web.Request, web.Application], admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """A resent batch with new scans among the old ones (in another order): the old ones are
    duplicates, the new ones are stored, counted and move the status, once each."""
    assert (await client.put("/v1/orders/o-1", json=order(), headers=admin)).status == 201
    await _shipments(client, admin, 3)

    def scan(n: int) -> dict[str, object]:
        return event("in_transit", f"2026-11-03T{10 + n // 60:02d}:{n % 60:02d}:00Z",
                     tracking_number=f"1ZMIX{n % 3}", event_id=f"e{n}")

    old = [scan(n) for n in range(120)]
    first = await client.post("/v1/tracking-events", json=old, headers=admin)
    assert (await first.json())["accepted"] == 120
    new = [scan(n) for n in range(120, 200)]
    new.append(event("delivered", "2026-11-05T13:00:00Z", tracking_number="1ZMIX1",
                     event_id="done"))
    new.append(event("ZZ9", "2026-11-06T13:00:00Z", tracking_number="1ZMIX2", event_id="odd"))
    mixed = old[::2] + new + old[1::2]
    answer = await client.post("/v1/tracking-events", json=mixed, headers=admin)
    assert await answer.json() == {"accepted": 82, "duplicates": 120, "rejected": 0,
                                   "errors": []}
    again = await client.post("/v1/tracking-events", json=mixed, headers=admin)
    assert await again.json() == {"accepted": 0, "duplicates": 202, "rejected": 0,
                                  "errors": []}
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 202
        shown = {r["shipment_id"]: r for r in await conn.fetch(
            "SELECT shipment_id, status, event_count, last_event_at FROM shipments")}
        queued = await conn.fetchval(
            "SELECT count(*) FROM work_items WHERE state = 'pending' AND kind = 'refresh_shipment'")
    assert sorted(r["event_count"] for r in shown.values()) == [67, 67, 68]
    assert shown["s-1"]["status"] == "delivered"
    # An unreadable code is stored and counted, and moves no status.
    assert shown["s-2"]["status"] == "in_transit"
    assert shown["s-2"]["last_event_at"].isoformat() == "2026-11-06T13:00:00+00:00"
    assert queued == 3


async def test_overlapping_batches_racing_store_each_event_once(
    client: TestClient[web.Request, web.Application], admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """Batches sent at once that share events (a sender retrying while its first try is
    still in flight): every event is stored and accepted once, the counts agree."""
    import asyncio

    assert (await client.put("/v1/orders/o-1", json=order(), headers=admin)).status == 201
    await _shipments(client, admin, 4)

    def scan(n: int) -> dict[str, object]:
        return event("in_transit", f"2026-11-03T{n // 60 % 24:02d}:{n % 60:02d}:00Z",
                     tracking_number=f"1ZMIX{n % 4}", event_id=f"e{n}")

    # Six batches of 120, each sharing half of its events with the next: 420 events.
    batches = [[scan(n) for n in range(k * 60, k * 60 + 120)] for k in range(6)]

    async def push(batch: list[dict[str, object]]) -> dict[str, int]:
        answer = await client.post("/v1/tracking-events", json=batch, headers=admin)
        assert answer.status == 202
        return await answer.json()  # type: ignore[no-any-return]

    answers = await asyncio.gather(*(push(b) for b in batches))
    assert sum(a["accepted"] for a in answers) == 420
    assert sum(a["duplicates"] for a in answers) == 6 * 120 - 420
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 420
        assert await conn.fetchval("SELECT count(*) FROM tracking_event_keys") == 420
        assert await conn.fetchval("SELECT sum(event_count) FROM shipments") == 420


async def test_texts_with_control_characters_or_empty_are_stored_as_sent(
    client: TestClient[web.Request, web.Application], admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    """The batch's texts travel packed, joined by control characters (service.store.events):
    texts holding those characters, empty texts and missing ones still read back exactly."""
    await _setup(client, admin)
    sent = ["unit\x1fseparator", "\x1e", "", None, "record\x1eseparator", "plain"]
    batch = [event("in_transit", f"2026-11-03T10:00:0{n}Z", description=text)
             for n, text in enumerate(sent)]
    answer = await client.post("/v1/tracking-events", json=batch, headers=admin)
    assert (await answer.json())["accepted"] == len(sent)
    # One event alone, with an empty description, and a batch whose texts pack cleanly.
    alone = await client.post("/v1/tracking-events", headers=admin,
                              json=event("in_transit", "2026-11-03T11:00:00Z", description=""))
    assert (await alone.json())["accepted"] == 1
    clean = [event("in_transit", f"2026-11-03T12:00:0{n}Z", description=text)
             for n, text in enumerate(["", None, "x"])]
    assert (await (await client.post("/v1/tracking-events", json=clean, headers=admin)
                   ).json())["accepted"] == 3
    async with pool.acquire() as conn:
        stored = [r["description"] for r in await conn.fetch(
            "SELECT description FROM tracking_events ORDER BY occurred_at")]
    assert stored == [*sent, "", "", None, "x"]
