"""Real carrier codes, any carrier, normalized tracking numbers and tracker states, through the
HTTP endpoints (real signatures) against real PostgreSQL; each delivery replayed and shuffled."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.store import vocabulary
from service.tracking.carrier_codes import remap
from service.tracking.carrier_tables import CodeRow, load_codes
from service.tracking.taxonomy import STATUSES
from tests.builders import event, shipment
from tests.integrations.conftest import FIXTURES, Post


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


async def _rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def _shown(hooks: TestClient, admin: dict[str, str], shipment_id: str) -> dict[str, Any]:
    answer = await hooks.get(f"/v1/shipments/{shipment_id}", headers=admin)
    assert answer.status == 200, await answer.text()
    return dict(await answer.json())


async def _support(hooks: TestClient, admin: dict[str, str], shipment_id: str) -> dict[str, Any]:
    answer = await hooks.get(f"/v1/support/shipments/{shipment_id}", headers=admin)
    assert answer.status == 200, await answer.text()
    return dict(await answer.json())


async def test_real_ups_codes_keep_their_substatus_and_an_access_point_is_not_delivered(
    hooks: TestClient, admin: dict[str, str],
) -> None:
    # The OMS spells the carrier its own way and the number with spaces and dashes.
    put = await hooks.put("/v1/shipments/s-sig", headers=admin,
                          json=shipment("o-1", "1z 999-aa1 0123456784", carrier="U.P.S."))
    assert put.status == 201, await put.text()
    await hooks.put("/v1/shipments/s-ap", headers=admin,
                    json=shipment("o-1", "1Z999AA10123456785", carrier="United Parcel Service"))
    scans = [event("P", "2026-11-02T18:00:00Z", "1Z999AA10123456784"),
             event("I", "2026-11-03T08:00:00Z", "1z999aa10123456784"),
             event("KB", "2026-11-04T15:00:00Z", "1Z999AA10123456784"),
             event("P", "2026-11-02T18:00:00Z", "1Z999AA10123456785"),
             event("ZP", "2026-11-04T12:00:00Z", "1Z999AA10123456785")]
    batch = scans * 2
    random.Random(7).shuffle(batch)
    answer = await hooks.post("/v1/tracking-events", json={"events": batch}, headers=admin)
    assert answer.status == 202
    assert (await answer.json())["accepted"] == 5

    signed = await _shown(hooks, admin, "s-sig")
    assert (signed["carrier"], signed["carrier_name"], signed["tracking_number"]) == (
        "ups", "UPS", "1Z999AA10123456784")
    assert (signed["status"], signed["substatus"]) == ("delivered", "signature_obtained")
    assert signed["timeline"][-1]["substatus"] == "signature_obtained"
    waiting = await _shown(hooks, admin, "s-ap")
    # Waiting at an Access Point: not terminal, so the parcel's story goes on.
    assert (waiting["status"], waiting["substatus"]) == ("available_for_pickup", "access_point")
    assert waiting["delivered_at"] is None
    case = await _support(hooks, admin, "s-ap")
    assert case["substatus"] == "access_point"
    assert [e["substatus"] for e in case["timeline"]] == ["picked_up", "access_point"]


async def test_unknown_codes_change_nothing_are_counted_once_and_remap_later(
    hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await hooks.put("/v1/shipments/s-1", json=shipment("o-1", "1Z0001"), headers=admin)
    scans = [event("I", "2026-11-03T08:00:00Z"),
             event("Q7", "2026-11-03T12:00:00Z", description="Weird new scan"),
             event("Q7", "2026-11-03T13:00:00Z")]
    for _ in range(2):  # replayed: duplicates are not counted again
        answer = await hooks.post("/v1/tracking-events", json={"events": scans}, headers=admin)
        assert answer.status == 202
    shown = await _shown(hooks, admin, "s-1")
    assert shown["status"] == "in_transit"
    assert [e["status"] for e in shown["timeline"]] == ["in_transit", "unknown", "unknown"]
    async with pool.acquire() as conn:
        (unknown,) = await vocabulary.unknown_codes(conn)
    assert (unknown.carrier, unknown.code, unknown.events) == ("ups", "Q7", 2)
    assert unknown.sample_description == "Weird new scan"

    def derive(carrier: str, raw_code: str | None, stored: Any) -> Any:
        return remap(carrier, raw_code, stored, STATUSES)

    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM work_items")
        nothing = await vocabulary.remap(conn, derive, clock.now())
    assert (nothing.events, nothing.changed, nothing.shipments) == (3, 0, 0)

    # An operator adds the code to the UPS table; remap re-derives events and shipments.
    monkeypatch.setitem(load_codes()["ups"], "Q7", CodeRow(
        "exception", "held", "exception", "held", "test"))
    async with pool.acquire() as conn:
        report = await vocabulary.remap(conn, derive, clock.now())
        assert await vocabulary.unknown_codes(conn) == []
        queued = await conn.fetch("SELECT subject_id FROM work_items")
    assert (report.changed, report.shipments) == (2, 1)
    assert [r["subject_id"] for r in queued] == ["s-1"]  # its ETA and messages follow
    shown = await _shown(hooks, admin, "s-1")
    assert (shown["status"], shown["substatus"]) == ("exception", "held")
    async with pool.acquire() as conn:
        again = await vocabulary.remap(conn, derive, clock.now())
    assert again.changed == 0


@pytest.mark.parametrize("company", [None, "Other", "Pigeon Post", "Fedex Ground"])
async def test_shopify_fulfilments_with_any_carrier_are_stored_with_notes(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    company: str | None,
) -> None:
    order = payload("shopify/orders_create.json")
    fulfilment = copy.deepcopy(payload("shopify/fulfillments_create.json"))
    fulfilment["tracking_company"] = company
    fulfilment["tracking_number"] = "1z-2345"  # as the merchant typed it
    fulfilment["tracking_numbers"] = ["1z-2345"]
    order["fulfillments"] = [fulfilment]
    deliveries = [(body(order), "orders/create", "w-o"),
                  (body(fulfilment), "fulfillments/create", "w-f")] * 2
    random.Random(11).shuffle(deliveries)
    for data, topic, webhook_id in deliveries:
        answer = await post("shopify", data, **{"X-Shopify-Topic": topic,
                                                "X-Shopify-Webhook-Id": webhook_id})
        assert answer.status == 200, await answer.text()
    expected = {None: "other:unknown", "Other": "other:other",
                "Pigeon Post": "other:pigeon-post", "Fedex Ground": "fedex"}[company]
    shown = await _shown(hooks, admin, "shopify-123456")
    assert (shown["carrier"], shown["tracking_number"], shown["status"]) == (
        expected, "1Z2345", "label_created")
    notes = await _rows(pool, "SELECT detail->'notes' AS notes FROM webhook_deliveries "
                              "WHERE outcome = 'processed'")
    noted = [n for r in notes for n in (r["notes"] or [])]
    assert any("tracked as" in n for n in noted) == (expected != "fedex")


@pytest.mark.parametrize("company", ["ups", None])
async def test_a_lower_case_shopify_number_meets_the_carriers_upper_case_scans(
    post: Post, hooks: TestClient, admin: dict[str, str], company: str | None,
) -> None:
    fulfilment = payload("shopify/fulfillments_create.json")
    # No carrier named: a UPS number's shape names it, so EasyPost's UPS scans meet it.
    fulfilment["tracking_company"] = company
    fulfilment["tracking_number"] = "1z999aa10123456784"
    fulfilment["tracking_numbers"] = ["1z999aa10123456784"]
    tracker = payload("easypost/tracker_updated_in_transit.json")
    tracker["result"]["tracking_code"] = "1Z999AA10123456784"
    tracker["result"]["carrier"] = "UPS"
    deliveries = [("shopify", body(fulfilment)), ("easypost", body(tracker))] * 2
    random.Random(2).shuffle(deliveries)
    for source, data in deliveries:
        headers = {"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w-1"} \
            if source == "shopify" else {}
        assert (await post(source, data, **headers)).status == 200
    shown = await _shown(hooks, admin, "shopify-123456")
    assert (shown["carrier"], shown["tracking_number"]) == ("ups", "1Z999AA10123456784")
    assert len(shown["timeline"]) > 1
    assert shown["status"] == "in_transit"


def _easypost_error() -> dict[str, Any]:
    tracker = payload("easypost/tracker_created.json")
    result = tracker["result"]
    result.update(status="error", status_detail="unknown", est_delivery_date=None)
    result["tracking_details"] = [{
        "object": "TrackingDetail", "message": "Invalid tracking number", "description": None,
        "status": "error", "status_detail": None, "datetime": "2026-11-02T15:21:00Z",
        "source": "USPS", "carrier_code": None,
        "tracking_location": {"object": "TrackingLocation", "city": None, "state": None,
                              "country": None, "zip": None}}]
    return tracker


def _aftership(tag: str) -> dict[str, Any]:
    update = payload("aftership/tracking_update_in_transit.json")
    update["msg"].update(tag=tag, subtag=f"{tag}_001", subtag_message=f"{tag} by AfterShip",
                         checkpoints=[], tracking_number="9400110898825022579493",
                         slug="usps", expected_delivery=None)
    return update


async def test_aggregator_states_are_tracker_state_never_a_parcel_exception(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
) -> None:
    await hooks.put("/v1/shipments/s-ep", headers=admin,
                    json=shipment("o-1", "9400110898825022579493", carrier="usps"))
    error = _easypost_error()
    deliveries = [body(error), body(_aftership("Pending")), body(_aftership("Expired"))]
    deliveries = [("easypost", deliveries[0]), ("aftership", deliveries[1]),
                  ("aftership", deliveries[2])] * 2
    random.Random(4).shuffle(deliveries)
    for source, data in deliveries:
        answer = await post(source, data)
        assert answer.status == 200, await answer.text()
    shown = await _shown(hooks, admin, "s-ep")
    assert shown["status"] == "label_created"  # no customer-facing change
    assert shown["timeline"] == []
    assert not await _rows(pool, "SELECT 1 FROM tracking_events")
    assert not await _rows(pool, "SELECT 1 FROM notifications")
    case = await _support(hooks, admin, "s-ep")
    states = {t["source"]: t for t in case["trackers"]}
    assert states["easypost"]["state"] == "error"
    assert states["easypost"]["message"] == "Invalid tracking number"
    # Both AfterShip deliveries carry no time of their own: the latest received stands.
    assert states["aftership"]["state"] in {"Pending", "Expired"}


async def test_shipments_accept_any_carrier_through_the_api(
    hooks: TestClient, admin: dict[str, str],
) -> None:
    for shipment_id, carrier, slug, name in [
            ("s-a", "Fedex Ground", "fedex", "FedEx"), ("s-b", "DHL Express", "dhl", "DHL Express"),
            ("s-c", "Bob's Couriers", "other:bob-s-couriers", "Bob S Couriers"),
            ("s-d", None, "other:unknown", "Carrier")]:
        data = shipment("o-1", f"TN-{shipment_id}", carrier=carrier)
        for _ in range(2):
            answer = await hooks.put(f"/v1/shipments/{shipment_id}", json=data, headers=admin)
            assert answer.status in (200, 201), await answer.text()
        shown = await _shown(hooks, admin, shipment_id)
        assert (shown["carrier"], shown["carrier_name"]) == (slug, name)
        scan = event("in_transit", "2026-11-03T08:00:00Z", f"tn{shipment_id}",
                     carrier=carrier or "other:unknown")
        answer = await hooks.post("/v1/tracking-events", json=scan, headers=admin)
        assert answer.status == 202, await answer.text()
        assert (await _shown(hooks, admin, shipment_id))["status"] == "in_transit"
