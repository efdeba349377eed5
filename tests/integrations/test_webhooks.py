"""The three webhook endpoints end to end, against real PostgreSQL."""

from __future__ import annotations

import json
import random

import asyncpg
from aiohttp.test_utils import TestClient

from service.security.webhook_secrets import WebhookSecrets
from tests.builders import shipment
from tests.integrations.conftest import Post, build_client_app, fixture, sign

SHOPIFY = ["orders_create", "fulfillments_create", "fulfillments_update_in_transit",
           "fulfillments_update_out_for_delivery", "fulfillments_update_delivered"]
EASYPOST = ["tracker_created", "tracker_updated_in_transit", "tracker_updated_delivered"]
AFTERSHIP = ["tracking_update_in_transit", "tracking_update_departed",
             "tracking_update_delivered"]


async def _count(pool: asyncpg.Pool, sql: str) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(sql))


async def test_shopify_orders_and_fulfilments_replayed_and_shuffled(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    deliveries = [(name, f"wh-{i}") for i, name in enumerate(SHOPIFY)] * 2
    random.Random(3).shuffle(deliveries)
    answers = []
    for name, webhook_id in deliveries:
        topic = "orders/create" if name.startswith("orders") else (
            "fulfillments/create" if name.endswith("create") else "fulfillments/update")
        response = await post("shopify", fixture(f"shopify/{name}.json"),
                              **{"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id})
        assert response.status == 200, await response.text()
        answers.append((await response.json())["status"])
    assert answers.count("duplicate") == len(SHOPIFY)
    shown = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
    assert (shown["status"], shown["carrier"], shown["tracking_number"]) == (
        "delivered", "ups", "1Z2345")
    assert shown["delivered_at"] == "2026-11-05T21:02:00Z"
    assert [e["status"] for e in shown["timeline"]] == [
        "label_created", "in_transit", "out_for_delivery", "delivered"]
    order = await (await hooks.get("/v1/orders/shopify-820982911946154508", headers=admin)).json()
    assert order["customer"]["phone"] == "+14155552671"
    assert order["customer"]["timezone"] == "America/Los_Angeles"
    assert await _count(pool, "SELECT count(*) FROM webhook_deliveries "
                              "WHERE outcome = 'processed' AND attempts = 1") == len(SHOPIFY)


async def test_easypost_trackers_replayed_and_shuffled(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    body = shipment("o-1", "9400110898825022579493", carrier="usps")
    assert (await hooks.put("/v1/shipments/s-ep", json=body, headers=admin)).status == 201
    bodies = [fixture(f"easypost/{name}.json") for name in EASYPOST] * 2
    random.Random(5).shuffle(bodies)
    statuses = [(await (await post("easypost", b)).json())["status"] for b in bodies]
    assert statuses.count("duplicate") == 3 and statuses.count("processed") == 3
    shown = await (await hooks.get("/v1/shipments/s-ep", headers=admin)).json()
    assert shown["status"] == "delivered"
    timeline = shown["timeline"]
    assert len(timeline) == 6 and shown["event_count"] == 6
    # The naive Memphis scan (ZIP 38118, Central time) is stored in UTC...
    memphis = next(e for e in timeline if e["description"].startswith("Arrived"))
    assert memphis["occurred_at"] == "2026-11-03T10:12:00Z"
    # ...the unknown carrier code is kept raw...
    held = next(e for e in timeline if e["raw_code"] == "ZZ9")
    assert held["status"] == "unknown"
    async with pool.acquire() as conn:
        payload = await conn.fetchval(
            "SELECT payload FROM tracking_events WHERE description LIKE 'Arrived%'")
        estimate = await conn.fetchrow(
            "SELECT carrier_estimated_delivery, carrier_estimate_source FROM shipments")
    # ...and the inference is recorded beside the event.
    assert payload["time"] == {"inferred": True, "basis": "zip", "zone": "America/Chicago"}
    assert payload["detail"]["datetime"] == "2026-11-03T04:12:00"
    assert str(estimate["carrier_estimated_delivery"]) == "2026-11-06"
    assert estimate["carrier_estimate_source"] == "easypost:est_delivery_date_local"
    metrics = await (await hooks.get("/metrics")).text()
    assert 'parcelcast_unknown_status_events_total{carrier="usps"} 1.0' in metrics


async def test_aftership_checkpoints_replayed_and_shuffled(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    bodies = [fixture(f"aftership/{name}.json") for name in AFTERSHIP] * 2
    random.Random(11).shuffle(bodies)
    for b in bodies:
        assert (await post("aftership", b)).status == 200
    # Events that came before the OMS told us of the shipment attach when it does.
    body = shipment("o-2", "111111111111", carrier="fedex")
    assert (await hooks.put("/v1/shipments/s-as", json=body, headers=admin)).status == 201
    shown = await (await hooks.get("/v1/shipments/s-as", headers=admin)).json()
    assert shown["status"] == "delivered"
    assert [e["raw_code"] for e in shown["timeline"]] == [
        "InfoReceived_001", "InTransit_002", "InTransit_003", "InTransit_007",
        "OutForDelivery_001", "Delivered_001"]
    # 22:47 in Dallas (75261, CST after the DST change on Nov 1) is 04:47 UTC.
    assert shown["timeline"][2]["occurred_at"] == "2026-11-04T04:47:00Z"
    assert shown["timeline"][2]["location"]["country"] == "US"
    # The documented empty checkpoint_time: that checkpoint skipped and noted, not a 422.
    assert await _count(pool, "SELECT count(*) FROM webhook_deliveries "
                              "WHERE outcome = 'processed' AND detail ? 'notes'") == 2
    # The estimate that came before the shipment was kept, and the shipment took it.
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT carrier_estimated_delivery AS d, "
                                  "carrier_estimate_source AS s FROM shipments")
    assert (str(row["d"]), row["s"]) == ("2026-11-05", "aftership:courier_estimated_delivery_date")


async def test_signatures_bad_missing_and_replayed(
    post: Post, hooks: TestClient, pool: asyncpg.Pool
) -> None:
    body = fixture("easypost/tracker_created.json")
    bad = sign("easypost", body + b" ")
    assert (await hooks.post("/v1/webhooks/easypost", data=body, headers=bad)).status == 401
    for source in ("shopify", "easypost", "aftership"):
        missing = await hooks.post(f"/v1/webhooks/{source}", data=body,
                                   headers={"Content-Type": "application/json"})
        assert missing.status == 401
        assert (await missing.json())["type"].endswith("bad-signature")
    assert await _count(pool, "SELECT count(*) FROM webhook_deliveries") == 0
    assert (await (await post("easypost", body)).json())["status"] == "processed"
    replay = await post("easypost", body)
    assert replay.status == 200 and (await replay.json())["status"] == "duplicate"
    assert await _count(pool, "SELECT count(*) FROM tracking_events") == 2
    assert await _count(pool, "SELECT sum(attempts) FROM webhook_deliveries") == 1


async def test_an_unconfigured_sender_is_refused(
    aiohttp_client: object, settings: object, clock: object, pool: asyncpg.Pool
) -> None:
    app = build_client_app(settings, clock, WebhookSecrets(shopify_webhook_secret=""))  # type: ignore[arg-type]
    client = await aiohttp_client(app)  # type: ignore[operator]
    body = fixture("shopify/orders_create.json")
    answer = await client.post("/v1/webhooks/shopify", data=body, headers=sign("shopify", body))
    assert answer.status == 503
    assert "SHOPIFY_WEBHOOK_SECRET" in (await answer.json())["detail"]


async def test_malformed_bodies_name_the_field_and_write_nothing(
    post: Post, pool: asyncpg.Pool
) -> None:
    broken = await post("aftership", b'{"msg": ')
    assert broken.status == 400
    event = json.loads(fixture("easypost/tracker_created.json"))
    del event["result"]["tracking_code"]
    missing = await post("easypost", json.dumps(event).encode())
    assert missing.status == 422
    assert (await missing.json())["errors"][0]["field"] == "result.tracking_code"
    naive = json.loads(fixture("shopify/fulfillments_create.json"))
    naive["created_at"] = "2026-11-02T09:00:00"
    rejected = await post("shopify", json.dumps(naive).encode(),
                          **{"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w2"})
    assert (await rejected.json())["errors"][0]["field"] == "created_at"
    for table in ("orders", "shipments", "tracking_events"):
        assert await _count(pool, f"SELECT count(*) FROM {table}") == 0
    # Kept for re-processing, and a fixed retry of the same delivery is processed.
    assert await _count(pool, "SELECT count(*) FROM webhook_deliveries "
                              "WHERE outcome = 'rejected'") == 3
    retry = await post("shopify", fixture("shopify/fulfillments_create.json"),
                       **{"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w2"})
    assert (await retry.json())["status"] == "processed"
    assert await _count(pool, "SELECT count(*) FROM shipments") == 1


async def test_a_naive_time_without_location_takes_the_origin_zone(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    body = shipment("o-1", "9400110898825022579493", carrier="usps")  # origin ZIP 10001
    await hooks.put("/v1/shipments/s-ep", json=body, headers=admin)
    event = json.loads(fixture("easypost/tracker_created.json"))
    event["result"]["tracking_details"] = [dict(
        event["result"]["tracking_details"][0], datetime="2026-11-02T09:30:00",
        tracking_location={"object": "TrackingLocation"})]
    assert (await post("easypost", json.dumps(event).encode())).status == 200
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT occurred_at, payload FROM tracking_events")
    assert row["occurred_at"].isoformat() == "2026-11-02T14:30:00+00:00"
    assert row["payload"]["time"] == {"inferred": True, "basis": "origin",
                                      "zone": "America/New_York"}


async def test_shopify_unknown_shipment_status_is_kept_raw(
    post: Post, hooks: TestClient, admin: dict[str, str]
) -> None:
    body = json.loads(fixture("shopify/fulfillments_create.json"))
    body["shipment_status"] = "teleported"
    answer = await post("shopify", json.dumps(body).encode(),
                        **{"X-Shopify-Topic": "fulfillments/create", "X-Shopify-Webhook-Id": "w9"})
    assert answer.status == 200
    shown = await (await hooks.get("/v1/shipments/shopify-123456", headers=admin)).json()
    assert shown["status"] == "label_created"
    assert [(e["status"], e["raw_code"]) for e in shown["timeline"]] == [("unknown", "teleported")]
