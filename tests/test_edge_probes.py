"""Hand-made probes: each class of bad input at every endpoint and webhook gets a 4xx
problem+json naming the field, and writes nothing (table counts before and after).

Webhooks keep a delivery they refuse (as 'rejected', for re-processing) unless the
refusal comes before the body is read (media type, signature): that record is the one
write they make, and it is checked too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from twilio.request_validator import RequestValidator

from service.security.webhook_secrets import WebhookSecrets
from service.settings import Settings
from tests.builders import event, order, shipment
from tests.integrations.conftest import SECRETS, build_client_app, fixture, sign

COUNTED = ("orders", "shipments", "tracking_events", "work_items", "opt_outs",
           "notifications", "webhook_deliveries")
NUL = "\u0000"
DEEP = b"[" * 10_000 + b"]" * 10_000
NO_BOUNDARY = {"Content-Type": "multipart/form-data"}
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


def nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.fixture
async def api(aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings,
              clock: Any, pool: asyncpg.Pool) -> TestClient:
    secrets = WebhookSecrets(shopify_webhook_secret=SECRETS["shopify"],
                             easypost_webhook_secret=SECRETS["easypost"],
                             aftership_webhook_secret=SECRETS["aftership"])
    return await aiohttp_client(build_client_app(settings, clock, secrets))


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in COUNTED}


def twilio_signed(settings: Settings, path: str, form: dict[str, str]) -> dict[str, str]:
    url = f"{str(settings.public_base_url).rstrip('/')}{path}"
    signature = RequestValidator(settings.twilio_auth_token).compute_signature(url, form)
    return {**FORM, "X-Twilio-Signature": signature}


EVENT = event("in_transit", "2026-11-03T10:00:00Z")
TRACKER = json.loads(fixture("easypost/tracker_created.json"))
CHECKPOINTS = json.loads(fixture("aftership/tracking_update_in_transit.json"))

# (name, method, path, body, headers, status, field). A body given as text or an object
# is sent as JSON; bytes as they are.
API_PROBES: list[tuple[str, str, str, Any, dict[str, str], int, str]] = [
    ("order NUL", "PUT", "/v1/orders/o-1",
     order(customer={"name": f"Ada{NUL}"}), JSON, 422, "customer.name"),
    ("order NUL in an ignored field", "PUT", "/v1/orders/o-1",
     order(note=f"x{NUL}"), JSON, 422, "note"),
    ("order NUL in a key", "PUT", "/v1/orders/o-1",
     order(items=[{"name": "Mug", f"k{NUL}": 1}]), JSON, 422, "items.0.k\ufffd"),
    ("order not UTF-8", "PUT", "/v1/orders/o-1",
     b'{"placed_at": "2026-11-01T18:30:00Z", "customer": {"name": "\xff"}}', JSON, 400, "body"),
    ("order 10,000 deep", "PUT", "/v1/orders/o-1", DEEP, JSON, 400, "body"),
    ("order 40 deep", "PUT", "/v1/orders/o-1", order(extra=nested(40)), JSON, 422, "extra"),
    ("order year 1", "PUT", "/v1/orders/o-1",
     order(placed_at="0001-01-01T00:00:00+14:00"), JSON, 422, "placed_at"),
    ("order year 9999", "PUT", "/v1/orders/o-1",
     order(placed_at="9999-12-31T23:00:00-12:00"), JSON, 422, "placed_at"),
    ("order 'yes' for a boolean", "PUT", "/v1/orders/o-1",
     order(consent={"email": "yes"}), JSON, 422, "consent.email"),
    ("order 0 for a boolean", "PUT", "/v1/orders/o-1",
     order(consent={"sms": 0}), JSON, 422, "consent.sms"),
    ("order '2' for an integer", "PUT", "/v1/orders/o-1",
     order(items=[{"name": "Mug", "quantity": "2"}]), JSON, 422, "items.0.quantity"),
    ("order multipart without boundary", "PUT", "/v1/orders/o-1",
     raw(order()), NO_BOUNDARY, 415, "Content-Type"),
    ("order text/plain", "PUT", "/v1/orders/o-1",
     raw(order()), {"Content-Type": "text/plain"}, 415, "Content-Type"),
    ("order id not ASCII", "PUT", "/v1/orders/o-%C3%A9", order(), JSON, 422, "order_id"),
    ("order id with a newline", "GET", "/v1/orders/o-1%0A", None, {}, 422, "order_id"),
    ("shipment promised 9999", "PUT", "/v1/shipments/s-1",
     shipment(promised_delivery_date="9999-12-31"), JSON, 422, "promised_delivery_date"),
    ("shipment promised 9 years out", "PUT", "/v1/shipments/s-1",
     shipment(promised_delivery_date="2035-11-06"), JSON, 422, "promised_delivery_date"),
    ("shipment label 1969", "PUT", "/v1/shipments/s-1",
     shipment(label_created_at="1969-12-31T23:00:00Z"), JSON, 422, "label_created_at"),
    ("shipment '850' for an integer", "PUT", "/v1/shipments/s-1",
     shipment(weight_grams="850"), JSON, 422, "weight_grams"),
    ("shipment NUL in tracking number", "PUT", "/v1/shipments/s-1",
     shipment(tracking_number=f"1Z{NUL}"), JSON, 422, "tracking_number"),
    ("event NUL", "POST", "/v1/tracking-events",
     dict(EVENT, description=f"Hub{NUL}"), JSON, 422, "description"),
    ("event NUL in an unknown field", "POST", "/v1/tracking-events",
     dict(EVENT, extra={"note": NUL}), JSON, 422, "extra.note"),
    ("event lone surrogate", "POST", "/v1/tracking-events",
     b'{"carrier": "ups", "tracking_number": "1Z", "status": "x", "description": "\\ud800",'
     b' "occurred_at": "2026-11-03T10:00:00Z"}', JSON, 400, "body"),
    ("event not UTF-8", "POST", "/v1/tracking-events",
     raw(EVENT).replace(b"Oakland", b"Oak\xfeland"), JSON, 400, "body"),
    ("events not UTF-8", "POST", "/v1/tracking-events",
     raw([EVENT]).replace(b"Oakland", b"Oak\xfeland"), JSON, 400, "body"),
    ("events 10,000 deep", "POST", "/v1/tracking-events", DEEP, JSON, 400, "body"),
    ("event 10,000 deep", "POST", "/v1/tracking-events",
     b'{"events": ' + DEEP + b"}", JSON, 400, "body"),
    ("event 40 deep", "POST", "/v1/tracking-events",
     dict(EVENT, extra=nested(40)), JSON, 422, "extra"),
    ("event year 1", "POST", "/v1/tracking-events",
     dict(EVENT, occurred_at="0001-01-01T00:00:00+14:00"), JSON, 422, "occurred_at"),
    ("event year 9999", "POST", "/v1/tracking-events",
     dict(EVENT, occurred_at="9999-12-31T23:00:00-12:00"), JSON, 422, "occurred_at"),
    ("event estimate 9999", "POST", "/v1/tracking-events",
     dict(EVENT, estimated_delivery="9999-12-31"), JSON, 422, "estimated_delivery"),
    ("event estimate 8 years out", "POST", "/v1/tracking-events",
     dict(EVENT, estimated_delivery="2034-11-05"), JSON, 422, "estimated_delivery"),
    ("events multipart without boundary", "POST", "/v1/tracking-events",
     raw([EVENT]), NO_BOUNDARY, 415, "Content-Type"),
    ("quote year 9999", "POST", "/v1/eta/quote",
     {"origin": {"country": "US"}, "destination": {"country": "US"},
      "order_time": "9999-12-31T23:00:00-12:00"}, JSON, 422, "order_time"),
    ("quote year 1", "POST", "/v1/eta/quote",
     {"origin": {"country": "US"}, "destination": {"country": "US"},
      "order_time": "0001-01-01T00:00:00+14:00"}, JSON, 422, "order_time"),
    ("quote NUL", "POST", "/v1/eta/quote",
     {"origin": {"postal_code": f"1{NUL}"}, "destination": {"country": "US"},
      "order_time": "2026-11-02T10:00:00Z"}, JSON, 422, "origin.postal_code"),
    ("lookup by a NUL tracking number", "GET", "/v1/shipments?tracking_number=1Z%00", None, {},
     422, "tracking_number"),
    ("lookup by an order id not UTF-8", "GET", "/v1/shipments?order_id=%FF", None, {},
     422, "order_id"),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "headers", "status", "field"),
                         API_PROBES, ids=[p[0] for p in API_PROBES])
async def test_api_probe(api: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
                         name: str, method: str, path: str, body: Any, headers: dict[str, str],
                         status: int, field: str) -> None:
    await api.put("/v1/orders/o-0", json=order(), headers=admin)  # something to not touch
    before = await counts(pool)
    data = body if isinstance(body, bytes) or body is None else raw(body)
    answer = await api.request(method, path, data=data, headers={**admin, **headers})
    assert answer.status == status, await answer.text()
    assert answer.content_type == "application/problem+json"
    problem = await answer.json()
    assert named(problem, field), problem
    assert await counts(pool) == before


def named(problem: dict[str, Any], field: str) -> bool:
    """The problem names the field (or, for a value nested too deep, a path inside it)."""
    return any(e["field"] == field or e["field"].startswith(f"{field}.")
               for e in problem["errors"])


async def test_a_bad_item_in_a_batch_is_its_own_rejection(
    api: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    batch = [EVENT, dict(EVENT, status="delivered", description=NUL),
             dict(EVENT, occurred_at="9999-12-31T23:00:00-12:00")]
    answer = await api.post("/v1/tracking-events", data=raw({"events": batch}),
                            headers={**admin, **JSON})
    assert answer.status == 202
    outcome = await answer.json()
    assert (outcome["accepted"], outcome["rejected"]) == (1, 2)
    assert [e["errors"][0]["field"] for e in outcome["errors"]] == [
        "events.1.description", "events.2.occurred_at"]
    assert (await counts(pool))["tracking_events"] == 1


WEBHOOK_PROBES: list[tuple[str, str, bytes, dict[str, str], int, str, bool]] = [
    # (name, source, body, extra headers, status, field, kept as rejected)
    ("shopify multipart without boundary", "shopify", fixture("shopify/orders_create.json"),
     NO_BOUNDARY, 415, "Content-Type", False),
    ("easypost not UTF-8", "easypost", b'{"description": "tracker.updated\xff"}', {}, 400,
     "body", True),
    ("aftership 10,000 deep", "aftership", DEEP, {}, 400, "body", True),
    ("aftership 40 deep", "aftership", raw({"msg": nested(40)}), {}, 400, "body", True),
    ("shopify order of year 9999", "shopify",
     raw(dict(json.loads(fixture("shopify/orders_create.json")),
              created_at="9999-12-31T23:00:00-12:00")),
     {"X-Shopify-Topic": "orders/create"}, 422, "created_at", True),
    ("easypost tracking code with NUL", "easypost",
     raw(dict(TRACKER, result=dict(TRACKER["result"], tracking_code=f"EZ{NUL}1"))), {}, 422,
     "result.tracking_code", True),
]


@pytest.mark.parametrize(("name", "source", "body", "headers", "status", "field", "kept"),
                         WEBHOOK_PROBES, ids=[p[0] for p in WEBHOOK_PROBES])
async def test_webhook_probe(api: TestClient, pool: asyncpg.Pool, name: str, source: str,
                             body: bytes, headers: dict[str, str], status: int, field: str,
                             kept: bool) -> None:
    before = await counts(pool)
    answer = await api.post(f"/v1/webhooks/{source}", data=body,
                            headers={**sign(source, body), **headers})
    assert answer.status == status, await answer.text()
    problem = await answer.json()
    assert named(problem, field), problem
    after = await counts(pool)
    assert after.pop("webhook_deliveries") == before.pop("webhook_deliveries") + kept
    assert after == before


async def test_webhook_without_signature_names_the_header(api: TestClient,
                                                          pool: asyncpg.Pool) -> None:
    answer = await api.post("/v1/webhooks/aftership", data=b"{}", headers=JSON)
    assert answer.status == 401
    assert (await answer.json())["errors"][0]["field"] == "aftership-hmac-sha256"
    assert (await counts(pool))["webhook_deliveries"] == 0


async def test_a_webhook_stores_what_it_can_and_notes_the_rest(
    api: TestClient, pool: asyncpg.Pool
) -> None:
    tracker = json.loads(fixture("easypost/tracker_created.json"))
    details = tracker["result"]["tracking_details"]
    details[0]["message"] = f"Picked up{NUL}"
    details[1]["datetime"] = "9999-12-31T23:00:00-12:00"
    tracker["result"]["est_delivery_date"] = "9999-01-01T00:00:00Z"
    body = raw(tracker)
    answer = await api.post("/v1/webhooks/easypost", data=body, headers=sign("easypost", body))
    assert answer.status == 200
    kept = await answer.json()
    assert kept["status"] == "processed"
    notes = " | ".join(kept["notes"])
    assert "result.tracking_details.0.message" in notes and "U+FFFD" in notes
    assert "result.tracking_details.1.datetime" in notes
    assert "est_delivery_date" in notes
    async with pool.acquire() as conn:
        descriptions = [r["description"] for r in await conn.fetch(
            "SELECT description FROM tracking_events ORDER BY occurred_at")]
        assert descriptions == ["Picked up\ufffd"]  # the other scan was not stored
        assert await conn.fetchval(
            "SELECT count(*) FROM shipments WHERE carrier_estimated_delivery IS NOT NULL") == 0
    update = json.loads(fixture("aftership/tracking_update_in_transit.json"))
    update["msg"]["checkpoints"][0]["checkpoint_time"] = "0001-01-01T00:00:00+14:00"
    body = raw(update)
    answer = await api.post("/v1/webhooks/aftership", data=body, headers=sign("aftership", body))
    assert answer.status == 200
    assert "msg.checkpoints.0.checkpoint_time" in " ".join((await answer.json())["notes"])


async def test_webhook_headers_that_are_not_utf8_are_stored_scrubbed(
    api: TestClient, pool: asyncpg.Pool
) -> None:
    body = fixture("shopify/orders_create.json")
    headers = {**sign("shopify", body), "X-Shopify-Topic": "orders/create"}
    # A raw request: an HTTP client would encode the header text; here it is a byte 0xFF.
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(b"POST /v1/webhooks/shopify HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 + head + b"X-Shopify-Webhook-Id: w-\xff\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT delivery_id FROM webhook_deliveries") == "w-\ufffd"


TWILIO_PROBES: list[tuple[str, str, dict[str, str] | bytes, dict[str, str] | None, int, str]] = [
    # (name, path, form (signed) or raw bytes, headers for raw bytes, status, field)
    ("inbound multipart without boundary", "inbound", b"From=%2B14155552671&Body=STOP",
     NO_BOUNDARY, 415, "Content-Type"),
    ("inbound JSON", "inbound", b'{"From": "+14155552671"}', JSON, 415, "Content-Type"),
    ("inbound not UTF-8", "inbound", b"From=%2B1415&Body=\xff", FORM, 400, "body"),
    ("inbound escaped bytes not UTF-8", "inbound", b"From=%2B1415&Body=%FF", FORM, 400, "body"),
    ("inbound NUL in From", "inbound", {"From": f"+1415{NUL}", "Body": "STOP"}, None, 422,
     "From"),
    ("inbound without From", "inbound", {"Body": "STOP"}, None, 422, "From"),
    ("status sid not ASCII", "status", {"MessageSid": "SMé", "MessageStatus": "delivered"},
     None, 422, "MessageSid"),
    ("status NUL in status", "status", {"MessageSid": "SM1", "MessageStatus": f"sent{NUL}"},
     None, 422, "MessageStatus"),
    ("status unsigned", "status", b"MessageSid=SM1&MessageStatus=sent", FORM, 401,
     "X-Twilio-Signature"),
]


@pytest.mark.parametrize(("name", "path", "form", "headers", "status", "field"),
                         TWILIO_PROBES, ids=[p[0] for p in TWILIO_PROBES])
async def test_twilio_probe(api: TestClient, pool: asyncpg.Pool, settings: Settings, name: str,
                            path: str, form: dict[str, str] | bytes,
                            headers: dict[str, str] | None, status: int, field: str) -> None:
    before = await counts(pool)
    url = f"/v1/webhooks/twilio/{path}"
    if isinstance(form, bytes):
        answer = await api.post(url, data=form, headers=headers)
    else:
        answer = await api.post(url, data=urlencode(form).encode(),
                                headers=twilio_signed(settings, url, form))
    assert answer.status == status, await answer.text()
    assert field in [e["field"] for e in (await answer.json())["errors"]]
    assert await counts(pool) == before


@pytest.mark.parametrize("token", [
    "%C3%A9", "%FF", "%00", "a.b", "a.b.c.d", "x" * 2000, "%F0%9F%93%A6.zz.zz", "...",
    "ZW1haWw6YUBiLmM.zz",
])
@pytest.mark.parametrize(("method", "page"), [("GET", "t"), ("GET", "u"), ("POST", "u")])
async def test_any_token_gets_a_friendly_page(api: TestClient, pool: asyncpg.Pool, token: str,
                                              method: str, page: str) -> None:
    before = await counts(pool)
    answer = await api.request(method, f"/{page}/{token}", data=b"\xff",
                               headers={"Content-Type": "multipart/form-data",
                                        "Accept-Language": "de-AT;q=0.9, fr;q=0.8"})
    assert answer.status == 404
    assert answer.content_type == "text/html"
    assert "Dieser Link funktioniert nicht" in await answer.text()
    assert await counts(pool) == before


async def test_a_key_that_is_not_ascii_is_unknown(api: TestClient) -> None:
    answer = await api.get("/v1/orders/o-1", headers={"Authorization": "Bearer pc_é_x"})
    assert answer.status == 401 and answer.content_type == "application/problem+json"
