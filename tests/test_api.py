"""Orders, shipments, auth and the one error shape, over real HTTP and PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.builders import event, order, shipment
from tests.conftest import START, KeyFactory


async def test_order_upsert_is_idempotent(client: TestClient, admin: dict[str, str]) -> None:
    first = await client.put("/v1/orders/o-1", json=order(), headers=admin)
    assert first.status == 201 and (await first.json())["created"] is True
    again = await client.put("/v1/orders/o-1", json=order(), headers=admin)
    assert again.status == 200 and (await again.json())["created"] is False
    changed = order(customer={"email": "ada@new.example", "locale": "de",
                              "timezone": "Europe/Berlin"})
    await client.put("/v1/orders/o-1", json=changed, headers=admin)
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    shown = await (await client.get("/v1/orders/o-1", headers=admin)).json()
    assert shown["customer"]["email"] == "ada@new.example"
    assert shown["customer"]["locale"] == "de"
    assert [s["shipment_id"] for s in shown["shipments"]] == ["s-1"]


@pytest.mark.parametrize(("body", "field"), [
    (order(placed_at="2026-11-01T18:30:00"), "placed_at"),
    (order(placed_at=12), "placed_at"),
    (order(customer={"email": "not-an-email"}), "customer.email"),
    (order(customer={"phone": "555-1234"}), "customer.phone"),
    (order(customer={"timezone": "Mars/Olympus"}), "customer.timezone"),
    (order(customer={"locale": "english"}), "customer.locale"),
    (order(items=[{"name": "Mug", "quantity": "lots"}]), "items.0.quantity"),
    ({}, "placed_at"),
])
async def test_bad_orders_name_the_field_and_write_nothing(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, body: dict[str, object],
    field: str,
) -> None:
    answer = await client.put("/v1/orders/o-1", json=body, headers=admin)
    assert answer.status == 422
    assert answer.content_type == "application/problem+json"
    problem = await answer.json()
    assert problem["status"] == 422 and problem["title"] == "Validation failed"
    assert field in [e["field"] for e in problem["errors"]]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0


@pytest.mark.parametrize(("body", "field"), [
    (shipment(carrier=["ups"]), "carrier"),
    (shipment(service_level="teleport"), "service_level"),
    (shipment(label_created_at="2026-11-02 09:00"), "label_created_at"),
    (shipment(promised_delivery_date="next week"), "promised_delivery_date"),
    (shipment(destination={"country": "usa"}), "destination.country"),
    (shipment(weight_grams=-5), "weight_grams"),
    (shipment(tracking_number=["1Z"]), "tracking_number"),
])
async def test_bad_shipments_name_the_field_and_write_nothing(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, body: dict[str, object],
    field: str,
) -> None:
    answer = await client.put("/v1/shipments/s-1", json=body, headers=admin)
    assert answer.status == 422
    assert field in [e["field"] for e in (await answer.json())["errors"]]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM shipments") == 0
        assert await conn.fetchval("SELECT count(*) FROM work_items") == 0


async def test_tracking_number_of_another_shipment_is_a_conflict(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    answer = await client.put("/v1/shipments/s-2", json=shipment(), headers=admin)
    assert answer.status == 409
    assert (await answer.json())["errors"][0]["field"] == "tracking_number"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM shipments") == 1


async def test_find_shipments_by_tracking_number_or_order(
    client: TestClient, admin: dict[str, str]
) -> None:
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await client.put("/v1/shipments/s-2", json=shipment(tracking_number="1Z0002"), headers=admin)
    await client.post("/v1/tracking-events", json=event("in_transit", "2026-11-03T10:00:00Z"),
                      headers=admin)
    by_tn = await (await client.get("/v1/shipments?tracking_number=1Z0001", headers=admin)).json()
    assert [s["shipment_id"] for s in by_tn["shipments"]] == ["s-1"]
    assert by_tn["shipments"][0]["status"] == "in_transit"
    by_order = await (await client.get("/v1/shipments?order_id=o-1", headers=admin)).json()
    assert [s["shipment_id"] for s in by_order["shipments"]] == ["s-1", "s-2"]
    neither = await client.get("/v1/shipments", headers=admin)
    assert neither.status == 422
    missing = await client.get("/v1/shipments/nope", headers=admin)
    assert missing.status == 404 and (await missing.json())["title"] == "Not found"


async def test_keys_and_scopes(client: TestClient, make_key: KeyFactory) -> None:
    reader = await make_key("shipments:read")
    writer = await make_key("events:write")
    assert (await client.get("/v1/shipments/s-1")).status == 401
    bad = await client.get("/v1/shipments/s-1", headers={"Authorization": "Bearer pc_nope_nope"})
    assert bad.status == 401 and (await bad.json())["status"] == 401
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")
    forbidden = await client.put("/v1/orders/o-1", json=order(), headers=reader)
    assert forbidden.status == 403
    assert "events:write" in (await forbidden.json())["detail"]
    assert (await client.put("/v1/orders/o-1", json=order(), headers=writer)).status == 201
    assert (await client.get("/v1/orders/o-1", headers=writer)).status == 403
    assert (await client.get("/v1/orders/o-1", headers=reader)).status == 200


async def test_keys_are_stored_hashed(make_key: KeyFactory, pool: asyncpg.Pool) -> None:
    headers = await make_key("admin")
    secret = headers["Authorization"].split()[1]
    async with pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT * FROM api_keys")
    assert secret.encode() not in bytes(stored["key_hash"])
    assert secret not in str(dict(stored))


async def test_error_shapes(client: TestClient, admin: dict[str, str], pool: asyncpg.Pool) -> None:
    nowhere = await client.get("/v2/nothing")
    assert nowhere.status == 404 and nowhere.content_type == "application/problem+json"
    wrong_method = await client.delete("/v1/orders/o-1", headers=admin)
    assert wrong_method.status == 405
    assert (await wrong_method.json())["status"] == 405
    broken = await client.put("/v1/orders/o-1", data=b'{"placed_at": ', headers=admin)
    assert broken.status == 400 and "JSON" in (await broken.json())["title"]
    xml = await client.put("/v1/orders/o-1", data=b"<order/>",
                           headers={**admin, "Content-Type": "application/xml"})
    assert xml.status == 415
    listed = await client.put("/v1/orders/o-1", json=[1, 2], headers=admin)
    assert listed.status == 422 and (await listed.json())["errors"][0]["field"] == "body"
    bad_id = await client.put("/v1/orders/bad id!", json=order(), headers=admin)
    assert bad_id.status == 422 and (await bad_id.json())["errors"][0]["field"] == "order_id"
    huge = {"events": [event("in_transit", "2026-11-03T10:00:00Z",
                             description="x" * 900, tracking_number=f"T{i}") for i in range(1000)]}
    too_big = await client.post("/v1/tracking-events", json=huge, headers=admin)
    assert too_big.status == 413
    assert "larger than" in (await too_big.json())["detail"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 0
        assert await conn.fetchval("SELECT count(*) FROM orders") == 0


async def test_health_ready_and_metrics(client: TestClient, admin: dict[str, str]) -> None:
    assert (await (await client.get("/healthz")).json())["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"postgres": "ok", "redis": "ok"}
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await client.post("/v1/tracking-events", json=[event("in_transit", "2026-11-03T10:00:00Z")] * 3,
                      headers=admin)
    text = await (await client.get("/metrics")).text()
    assert 'parcelcast_tracking_events_total{outcome="accepted"} 1.0' in text
    assert 'parcelcast_tracking_events_total{outcome="duplicate"} 2.0' in text
    assert 'parcelcast_work_items{state="pending"} 1.0' in text
    assert "parcelcast_arq_queue_depth 0.0" in text
    assert 'route="/v1/tracking-events"' in text


async def test_tracking_page_behind_a_signed_link(
    client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    from service.security.links import tracking_url

    await client.put("/v1/orders/o-1", json=order(customer={"locale": "de",
                                                            "timezone": "Europe/Berlin"},
                                                  items=[{"name": "<b>Mug</b>"}]),
                     headers=admin)
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await client.post("/v1/tracking-events", headers=admin, json=event(
        "in_transit", "2026-11-03T23:30:00Z", description="Arrived at <b>hub</b>"))
    url = tracking_url("http://x", settings.parcelcast_secret_key, "s-1", START)
    page = await client.get(url.removeprefix("http://x"))
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "1 × &lt;b&gt;Mug&lt;/b&gt;" in html  # the shop's data is escaped
    assert "Arrived at" not in html  # the carrier's English: our German words instead
    assert "Unterwegs" in html
    assert "Mi., 4. Nov., 00:30" in html  # Berlin time, in German's own pattern
    forged = await client.get(url.removeprefix("http://x")[:-2] + "zz")
    assert forged.status == 404
