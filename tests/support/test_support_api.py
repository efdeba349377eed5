"""The support API over real HTTP and PostgreSQL: every field of the one-call shipment view,
search, actions with their audit log, and every access rule."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from tests.builders import event, order, shipment
from tests.conftest import KeyFactory
from tests.support.conftest import NOW
from tests.test_openapi import _check


async def _get(client: TestClient, url: str, headers: dict[str, str]) -> Any:
    answer = await client.get(url, headers=headers)
    assert answer.status == 200, await answer.text()
    return await answer.json()


async def test_one_call_shows_everything_about_a_shipment(
    shop: TestClient, admin: dict[str, str]
) -> None:
    view = await _get(shop, "/v1/support/shipments/s-1", admin)
    doc = await (await shop.get("/openapi.json")).json()
    _check(doc, "get", "/v1/support/shipments/{shipment_id}", 200, view)
    assert view["customer"] == {"name": "Ada Lovelace", "email": "ada@example.com",
                                "phone": "+14155552671", "locale": "en",
                                "timezone": "America/Los_Angeles"}
    assert view["items"] == [{"sku": "MUG-1", "name": "Enamel mug", "quantity": 2}]
    assert view["status"] == "in_transit" and view["promised_delivery_date"] == "2026-11-06"
    assert view["timezone"] == "America/Los_Angeles" and view["muted"] is None
    # Normalized and raw timeline.
    [scan] = view["timeline"]
    assert scan["status"] == "in_transit" and scan["description"] == "Departed facility"
    assert scan["occurred_at"] == "2026-11-03T10:00:00Z"
    [raw] = view["raw_timeline"]
    assert raw["id"] == scan["id"] and raw["payload"]["status"] == "in_transit"
    # The first ETA shown and the current one, in UTC and local.
    first, current = view["eta_first"], view["eta_current"]
    assert first["predicted_at"] == "2026-11-02T15:00:00Z" and first["stage"] == "label"
    assert first["earliest"] == "2026-11-05T03:00:00Z"
    assert first["local"]["earliest"] == "2026-11-04"  # 19:00 the evening before in LA
    assert first["local"]["earliest_at"] == "2026-11-04T19:00:00-08:00"
    assert current["likely"] == "2026-11-07T12:30:00Z"
    assert current["local"] == {
        "timezone": "America/Los_Angeles", "earliest": "2026-11-06", "likely": "2026-11-07",
        "latest": "2026-11-08", "earliest_at": "2026-11-06T04:30:00-08:00",
        "likely_at": "2026-11-07T04:30:00-08:00", "latest_at": "2026-11-08T16:30:00-08:00"}
    assert view["probability_late"] == pytest.approx(0.81)
    # Revisions and what caused each.
    history = view["eta_history"]
    assert [h["caused_by"]["kind"] for h in history] == ["first", "scan"]
    assert history[1]["caused_by"]["event"]["description"] == "Departed facility"
    assert history[1]["window"] == current and history[0]["window"] == first
    # Reasons in an agent's words: the fact beside its effect, never "a recent scan lately"
    # for a parcel last scanned days before.
    texts = [r["text"] for r in view["reasons"]]
    assert texts == [
        "Time since the last carrier scan (2.5 h): takes about 4 h off",
        "Time left to the promised date (promised 2026-11-06, in 3 days): adds about 12 h",
        "Latest scan (in transit): adds about 2 h",
    ]
    assert [r["feature"] for r in view["reasons"]] == [
        "hours_since_last_scan", "hours_to_promise", "latest_status"]
    assert history[0]["reasons"][0]["text"] == "Carrier (UPS): takes about 3 h off"
    # Late, and why.
    delay = view["delay"]
    assert delay["state"] == "past_promise" and delay["late"] is True
    assert [w["kind"] for w in delay["why"]] == ["past_promise", "stalled"]
    assert delay["why"][0]["text"] == "Promised for 2026-11-06; still not delivered 2 days later."
    assert delay["why"][1]["since"] == "2026-11-03T10:00:00Z"
    # Every message: state, why, provider id, times.
    states = [(n["moment"], n["channel"], n["state"], n["why"]) for n in view["notifications"]]
    assert states == [
        ("shipped", "email", "sent", None),
        ("shipped", "sms", "skipped", "replaced by newer news before it went out"),
        ("predicted_delay", "email", "dead", "smtp 451: busy"),
        ("predicted_delay", "sms", "skipped", "opted out"),
        ("missed_promise", "email", "failed", "smtp 550: mailbox unavailable"),
        ("missed_promise", "sms", "waiting_for_morning",
         "SMS quiet hours in the customer's zone: goes out at 2026-11-09 03:00 UTC"),
        ("eta_revised", "email", "retrying", "attempt 2 failed: smtp: ConnectionRefusedError"),
    ]
    sent = view["notifications"][0]
    assert sent["provider_id"] == "Q1" and sent["sent_at"] == "2026-11-03T10:00:00Z"
    # The customer's own link works.
    assert view["tracking_link"].startswith("http://127.0.0.1:8080/t/")
    path = view["tracking_link"].removeprefix("http://127.0.0.1:8080")
    page = await shop.get(path)
    assert page.status == 200 and "1Z0001" in await page.text()


async def test_a_parcel_predicted_late_before_its_promise(
    shop: TestClient, admin: dict[str, str], clock: ManualClock
) -> None:
    clock.set(NOW.replace(day=4))
    view = await _get(shop, "/v1/support/shipments/s-1", admin)
    assert view["delay"]["state"] == "predicted_late"
    assert view["delay"]["why"][0]["text"] == (
        "Likely arrival 2026-11-07 is after the promised 2026-11-06 (chance of missing it: 81%).")


@pytest.mark.parametrize(("query", "found"), [
    ("order_id=o-1", ["s-2", "s-1"]),
    ("shipment_id=s-1", ["s-1"]),
    ("tracking_number=1z%200001", ["s-1"]),
    ("tracking_number=1Z-0002", ["s-2"]),
    ("email=ADA@Example.com", ["s-2", "s-1"]),
    ("phone=(415)%20555-2671", ["s-2", "s-1"]),
    ("phone=%2B1%20415%20555%202671", ["s-2", "s-1"]),
    ("name=ada%20lov", ["s-2", "s-1"]),
    ("name=Ad&order_id=o-1", ["s-2", "s-1"]),
    ("name=Grace", []),
    ("email=ada@example.com&tracking_number=1Z0002", ["s-2"]),
    ("q=ada@example.com", ["s-2", "s-1"]),
    ("q=1z-0001", ["s-1"]),
    ("q=o-1", ["s-2", "s-1"]),
    ("q=415%20555%202671", ["s-2", "s-1"]),
    ("q=Ada", ["s-2", "s-1"]),
])
async def test_search(shop: TestClient, admin: dict[str, str], clock: ManualClock,
                      query: str, found: list[str]) -> None:
    clock.set(NOW)
    await shop.put("/v1/shipments/s-2", headers=admin,
                   json=shipment(tracking_number="1Z0002"))
    await shop.put("/v1/orders/o-3", headers=admin, json=order(customer={
        "name": "Grace Hopper", "email": "grace@example.com"}))
    page = await _get(shop, f"/v1/support/search?{query}", admin)
    assert [s["shipment_id"] for s in page["shipments"]] == found
    doc = await (await shop.get("/openapi.json")).json()
    _check(doc, "get", "/v1/support/search", 200, page)


async def test_search_pages_newest_first(client: TestClient, admin: dict[str, str],
                                         clock: ManualClock) -> None:
    await client.put("/v1/orders/o-1", json=order(), headers=admin)
    for i in range(5):
        clock.set(NOW.replace(hour=i))
        await client.put(f"/v1/shipments/s-{i}", headers=admin,
                         json=shipment(tracking_number=f"1Z{i:04d}"))
    seen, url = [], "/v1/support/search?email=ada@example.com&limit=2"
    while True:
        page = await _get(client, url, admin)
        seen += [s["shipment_id"] for s in page["shipments"]]
        if page["next_cursor"] is None:
            break
        url = f"/v1/support/search?email=ada@example.com&limit=2&cursor={page['next_cursor']}"
    assert seen == ["s-4", "s-3", "s-2", "s-1", "s-0"]


@pytest.mark.parametrize(("query", "field"), [
    ("", "q"), ("q=%20", "q"), ("phone=abc", "phone"), ("name=A", "name"),
    ("email=", "email"), ("limit=0&q=x", "limit"), ("limit=x&q=x", "limit"),
    ("cursor=nope&q=x", "cursor"),
])
async def test_bad_searches_name_the_field(client: TestClient, admin: dict[str, str],
                                           query: str, field: str) -> None:
    answer = await client.get(f"/v1/support/search?{query}", headers=admin)
    assert answer.status == 422
    assert field in [e["field"] for e in (await answer.json())["errors"]]


async def test_searches_use_their_indexes(pool: asyncpg.Pool) -> None:
    from service.store.search import Criteria, explain

    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO orders (order_id, customer_name, customer_email, customer_phone,
                                   created_at, updated_at)
               SELECT 'o-' || i, 'Name ' || i, 'c' || i || '@example.com',
                      '+1415555' || lpad(i::text, 4, '0'), now(), now()
               FROM generate_series(1, 5000) i;
               INSERT INTO shipments (shipment_id, order_id, carrier, service_level,
                                      tracking_number, created_at, updated_at)
               SELECT 's-' || i, 'o-' || i, 'ups', 'ground', '1Z' || i,
                      now() - i * interval '1 minute', now()
               FROM generate_series(1, 5000) i;
               ANALYZE orders; ANALYZE shipments""")
        plans = {name: await explain(conn, criteria) for name, criteria in {
            "order_id": Criteria(order_id="o-17"), "shipment_id": Criteria(shipment_id="s-17"),
            "tracking_number": Criteria(tracking_number="1Z17"),
            "email": Criteria(email="c17@example.com"), "phone": Criteria(phone="+14155550017"),
            "name_prefix": Criteria(name_prefix="name 17"),
        }.items()}
    print("\n\n".join(f"-- {name}\n{plan}" for name, plan in plans.items()))
    assert "shipments_order_id" in plans["order_id"]
    assert "shipments_pkey" in plans["shipment_id"]
    assert "shipments_tracking_number_normalized" in plans["tracking_number"]
    assert "orders_customer_email_lower" in plans["email"]
    assert "orders_customer_phone" in plans["phone"]
    assert "orders_customer_name_prefix" in plans["name_prefix"]
    for name, plan in plans.items():
        assert "Seq Scan on orders" not in plan
        # A name prefix may match many orders: joining them by hash can beat an index probe
        # per order (at 100,000 shipments the planner loops over shipments_order_id).
        assert name == "name_prefix" or "Seq Scan" not in plan


async def test_actions_are_audited(shop: TestClient, make_key: KeyFactory,
                                   pool: asyncpg.Pool) -> None:
    agent = await make_key("shipments:read", "support:write")
    actor = agent["Authorization"].split("_")[1]
    async with pool.acquire() as conn:
        sent_id = await conn.fetchval(
            "SELECT id FROM notifications WHERE state = 'sent' AND channel = 'email'")
    resent = await shop.post(f"/v1/support/notifications/{sent_id}/resend", headers=agent,
                             json={"note": "customer cannot find the e-mail"})
    assert resent.status == 201
    new_id = (await resent.json())["notification_id"]
    muted = await shop.post("/v1/support/orders/o-1/mute", headers=agent,
                            json={"note": "customer asked for silence"})
    assert muted.status == 200
    # The two waiting messages and the resend still waiting are dropped; a resend asked for
    # after the mute would go out.
    assert (await muted.json())["done"]["detail"] == {"changed": True, "waiting_dropped": 3}
    lost = await shop.post("/v1/support/shipments/s-1/lost", headers=agent,
                           json={"note": "UPS claim 123"})
    assert lost.status == 200
    view = await _get(shop, "/v1/support/shipments/s-1", agent)
    assert view["status"] == "lost" and view["lost_at"] == "2026-11-08T18:00:00Z"
    assert view["muted"] == {"muted_at": "2026-11-08T18:00:00Z", "actor": actor,
                             "note": "customer asked for silence"}
    resend_entry = next(n for n in view["notifications"] if n["id"] == new_id)
    assert resend_entry["resend_of"] == sent_id and resend_entry["moment"] == "shipped"
    assert (resend_entry["state"], resend_entry["why"]) == ("skipped", "muted by support")
    delivered = await shop.post("/v1/support/shipments/s-1/delivered", headers=agent,
                                json={"note": "customer has it",
                                      "delivered_at": "2026-11-08T17:00:00Z"})
    assert delivered.status == 200
    view = await _get(shop, "/v1/support/shipments/s-1", agent)
    assert view["status"] == "delivered" and view["delivered_at"] == "2026-11-08T17:00:00Z"
    assert view["timeline"][-1]["raw_code"] == "support:delivered"
    again = await shop.post("/v1/support/shipments/s-1/lost", headers=agent,
                            json={"note": "x"})
    assert again.status == 409
    audit = await _get(shop, "/v1/support/orders/o-1/audit", agent)
    doc = await (await shop.get("/openapi.json")).json()
    _check(doc, "get", "/v1/support/orders/{order_id}/audit", 200, audit)
    assert [(e["action"], e["actor"], e["note"]) for e in audit["entries"]] == [
        ("mark_delivered", actor, "customer has it"),
        ("mark_lost", actor, "UPS claim 123"),
        ("mute", actor, "customer asked for silence"),
        ("resend", actor, "customer cannot find the e-mail"),
    ]
    assert audit["entries"][3]["notification_id"] == new_id
    assert audit["entries"][3]["detail"]["of"] == sent_id
    assert all(e["created_at"] == "2026-11-08T18:00:00Z" for e in audit["entries"])
    unmuted = await shop.post("/v1/support/orders/o-1/mute", headers=agent,
                              json={"muted": False})
    assert (await unmuted.json())["done"]["action"] == "unmute"


@pytest.mark.parametrize(("url", "body", "status", "field"), [
    ("/v1/support/notifications/999/resend", {}, 404, None),
    ("/v1/support/notifications/abc/resend", {}, 422, "notification_id"),
    ("/v1/support/orders/nope/mute", {}, 404, None),
    ("/v1/support/orders/o-1/mute", {"muted": "yes"}, 422, "muted"),
    ("/v1/support/shipments/s-1/lost", {}, 422, "note"),
    ("/v1/support/shipments/s-1/lost", {"note": " "}, 422, "note"),
    ("/v1/support/shipments/nope/lost", {"note": "x"}, 404, None),
    ("/v1/support/shipments/s-1/delivered", {"note": "x", "delivered_at": "2026-11-08"},
     422, "delivered_at"),
    ("/v1/support/shipments/s-1/delivered",
     {"note": "x", "delivered_at": "2026-12-01T00:00:00Z"}, 409, None),
])
async def test_bad_actions_change_nothing(shop: TestClient, admin: dict[str, str],
                                          pool: asyncpg.Pool, url: str, body: dict[str, Any],
                                          status: int, field: str | None) -> None:
    answer = await shop.post(url, headers=admin, json=body)
    assert answer.status == status
    assert answer.content_type == "application/problem+json"
    if field is not None:
        assert field in [e["field"] for e in (await answer.json())["errors"]]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM support_actions") == 0
        assert await conn.fetchval("SELECT lost_at FROM shipments") is None


async def test_access_rules(shop: TestClient, make_key: KeyFactory) -> None:
    reader, writer = await make_key("shipments:read"), await make_key("events:write")
    agent = await make_key("support:write")
    reads = ["/v1/support/search?q=ada", "/v1/support/shipments/s-1",
             "/v1/support/orders/o-1/audit"]
    for url in reads:
        assert (await shop.get(url)).status == 401
        assert (await shop.get(url, headers={"Authorization": "Bearer pc_x_y"})).status == 401
        assert (await shop.get(url, headers=writer)).status == 403
        assert (await shop.get(url, headers=agent)).status == 403
        assert (await shop.get(url, headers=reader)).status == 200
    action = "/v1/support/orders/o-1/mute"
    assert (await shop.post(action, json={})).status == 401
    for key in (reader, writer):
        forbidden = await shop.post(action, json={}, headers=key)
        assert forbidden.status == 403
        assert "support:write" in (await forbidden.json())["detail"]
    assert (await shop.post(action, json={}, headers=agent)).status == 200


async def test_scan_then_resend_goes_through_the_pipeline(
    shop: TestClient, admin: dict[str, str]
) -> None:
    """A resend is a notification like any other: the OpenAPI shape of the action holds."""
    answer = await shop.post("/v1/support/orders/o-1/mute", headers=admin, json={"note": "n"})
    doc = await (await shop.get("/openapi.json")).json()
    _check(doc, "post", "/v1/support/orders/{order_id}/mute", 200, await answer.json())
    await shop.post("/v1/tracking-events", headers=admin, json=event(
        "out_for_delivery", "2026-11-08T16:00:00Z"))
