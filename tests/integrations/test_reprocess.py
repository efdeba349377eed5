"""Re-processing stored deliveries through the current adapters (what `parcelcast webhooks
reprocess` runs), against deliveries received by the real endpoints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.integrations import pipeline
from service.tracking.carrier_tables import CodeRow, load_codes
from tests.builders import shipment
from tests.integrations.conftest import Post, fixture

TRACKERS = ["tracker_created", "tracker_updated_in_transit", "tracker_updated_delivered"]


async def _snapshot(pool: asyncpg.Pool) -> list[Any]:
    """Everything re-processing could change, row by row."""
    async with pool.acquire() as conn:
        return [[tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
                for table in ("tracking_events", "shipments", "orders", "work_items",
                              "webhook_deliveries")]


async def _reprocess(pool: asyncpg.Pool, clock: ManualClock, **selection: Any
                     ) -> pipeline.Report:
    clock.advance(timedelta(minutes=5))
    async with pool.acquire() as conn:
        return await pipeline.reprocess(conn, clock.now(), **selection)


async def test_a_code_learned_later_corrects_the_stored_event(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = shipment("o-1", "9400110898825022579493", carrier="usps")
    assert (await hooks.put("/v1/shipments/s-ep", json=body, headers=admin)).status == 201
    assert (await post("easypost", fixture("easypost/tracker_updated_in_transit.json"))).status == 200
    shown = await (await hooks.get("/v1/shipments/s-ep", headers=admin)).json()
    assert shown["status"] == "in_transit"
    held = next(e for e in shown["timeline"] if e["raw_code"] == "ZZ9")
    assert held["status"] == "unknown"

    # The map learns USPS's ZZ9 (in the code, as a release would).
    monkeypatch.setitem(load_codes()["usps"], "ZZ9", CodeRow(
        "exception", "held", "exception", "held", "test"))
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM work_items")
    report = await _reprocess(pool, clock, source="easypost")
    assert (report.deliveries, report.processed, report.failed) == (1, 1, [])
    assert (report.new_events, report.duplicates, report.corrected) == (0, 4, 1)

    shown = await (await hooks.get("/v1/shipments/s-ep", headers=admin)).json()
    held = next(e for e in shown["timeline"] if e["raw_code"] == "ZZ9")
    assert held["status"] == "exception"
    assert shown["status"] == "exception"  # derived again: the latest scan now counts
    async with pool.acquire() as conn:
        queued = await conn.fetch("SELECT subject_id FROM work_items")
    assert [r["subject_id"] for r in queued] == ["s-ep"]  # its ETA and messages follow

    before = await _snapshot(pool)
    again = await _reprocess(pool, clock)
    assert (again.new_events, again.corrected, again.duplicates) == (0, 0, 4)
    assert await _snapshot(pool) == before


async def test_deliveries_that_failed_or_came_too_early_are_completed(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    # A fulfilment refused: our API gave its tracking number to another shipment.
    taken = shipment("o-9", "1Z2345")
    assert (await hooks.put("/v1/shipments/s-other", json=taken, headers=admin)).status == 201
    refused = await post("shopify", fixture("shopify/fulfillments_create.json"),
                         **{"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w-1"})
    assert refused.status == 409
    # AfterShip scans before the OMS told us of the shipment: stored, and so is the estimate.
    for name in ("tracking_update_in_transit", "tracking_update_delivered"):
        assert (await post("aftership", fixture(f"aftership/{name}.json"))).status == 200
    clock.advance(timedelta(minutes=1))
    body = shipment("o-2", "111111111111", carrier="fedex")
    assert (await hooks.put("/v1/shipments/s-as", json=body, headers=admin)).status == 201
    assert (await hooks.get("/v1/shipments/s-as", headers=admin)
            ).status == 200 and (await _estimate(pool, "s-as")) == (
        "2026-11-05", "aftership:courier_estimated_delivery_date")

    # Still refused while the number is taken: reported, kept with the latest reason.
    dry = await _reprocess(pool, clock, source="shopify")
    assert [(f.delivery_id, f.error) for f in dry.failed] == [
        ("w-1", "tracking_number: already used by another shipment")]
    # The operator fixes the other shipment; a dry run shows what would happen, writes nothing.
    fixed = shipment("o-9", "1Z9999")
    assert (await hooks.put("/v1/shipments/s-other", json=fixed, headers=admin)).status == 200
    before = await _snapshot(pool)
    dry = await _reprocess(pool, clock, dry_run=True)
    assert (dry.deliveries, dry.processed, dry.failed, dry.new_events) == (3, 3, [], 1)
    assert await _snapshot(pool) == before

    report = await _reprocess(pool, clock)
    assert (report.processed, report.failed, report.new_events) == (3, [], 1)
    shown = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
    assert (shown["tracking_number"], shown["status"]) == ("1Z2345", "label_created")
    assert await _estimate(pool, "s-as") == ("2026-11-05", "aftership:courier_estimated_delivery_date")
    async with pool.acquire() as conn:
        record = await conn.fetchrow("SELECT delivery_id, outcome, attempts, detail "
                                     "FROM webhook_deliveries ORDER BY id LIMIT 1")
    # The record says it was completed by re-processing; attempts counts the sender's.
    assert (record["delivery_id"], record["outcome"], record["attempts"]) == ("w-1", "processed", 1)
    assert record["detail"]["reprocessed"] is True and record["detail"]["shipments"] == 1

    # A second run changes nothing: events dedupe, the estimate stays, rows are not rewritten.
    before = await _snapshot(pool)
    again = await _reprocess(pool, clock)
    assert (again.processed, again.new_events, again.corrected, again.failed) == (3, 0, 0, [])
    assert await _snapshot(pool) == before


async def test_an_old_delivery_never_undoes_a_later_change(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    created = await post("shopify", fixture("shopify/fulfillments_create.json"),
                         **{"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w-1"})
    assert created.status == 200
    clock.advance(timedelta(hours=1))
    # Later, our API moves the label time (a field Shopify carries) and sets a promise.
    ours = shipment("shopify-820982911946154508", "1Z2345", label_created_at="2026-11-02T13:00:00Z")
    assert (await hooks.put("/v1/shipments/shopify-123456", json=ours, headers=admin)).status == 200
    report = await _reprocess(pool, clock)
    assert (report.processed, report.kept_newer) == (1, 1)
    shown = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
    assert shown["label_created_at"] == "2026-11-02T13:00:00Z"
    assert shown["promised_delivery_date"] == "2026-11-06"


async def test_only_the_selected_deliveries_are_reprocessed(
    post: Post, pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    for name in TRACKERS:
        assert (await post("easypost", fixture(f"easypost/{name}.json"))).status == 200
    broken = json.loads(fixture("aftership/tracking_update_in_transit.json"))
    del broken["msg"]["tracking_number"]
    assert (await post("aftership", json.dumps(broken).encode())).status == 422
    async with pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM webhook_deliveries ORDER BY id")]
    assert (await _reprocess(pool, clock, delivery=ids[1])).deliveries == 1
    assert (await _reprocess(pool, clock, source="easypost")).deliveries == 3
    assert (await _reprocess(pool, clock, since=clock.now())).deliveries == 0
    still = await _reprocess(pool, clock, source="aftership")
    assert [(f.id, f.source) for f in still.failed] == [(ids[3], "aftership")]
    assert still.failed[0].error.startswith("msg.tracking_number:")


async def _estimate(pool: asyncpg.Pool, shipment_id: str) -> tuple[str, str] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT carrier_estimated_delivery AS d, carrier_estimate_source AS s "
                                  "FROM shipments WHERE shipment_id = $1", shipment_id)
    return (str(row["d"]), row["s"]) if row and row["d"] else None
