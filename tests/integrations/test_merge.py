"""Shopify's orders and fulfilments are partial views: they change only what Shopify states.

Our own PUT stays last-write-wins on the whole document (tests/test_api.py); a webhook must
not clear what the API, EasyPost or AfterShip set and Shopify does not carry.
"""

from __future__ import annotations

import json

import asyncpg
from aiohttp.test_utils import TestClient

from tests.builders import order, shipment
from tests.integrations.conftest import Post, fixture

SHIPMENT_ID = "shopify-123456"
ORDER_ID = "shopify-820982911946154508"


def _topic(topic: str, webhook_id: str) -> dict[str, str]:
    return {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id}


async def _shipment(hooks: TestClient, admin: dict[str, str]) -> dict:
    answer = await hooks.get(f"/v1/shipments/{SHIPMENT_ID}", headers=admin)
    assert answer.status == 200, await answer.text()
    return await answer.json()


async def test_a_fulfilment_keeps_what_shopify_does_not_carry(
    post: Post, hooks: TestClient, admin: dict[str, str], pool: asyncpg.Pool
) -> None:
    # Our API knows the promise, the service level, the weight and where it leaves from...
    ours = shipment(ORDER_ID, "1Z2345", service_level="express", weight_grams=1200,
                    promised_delivery_date="2026-11-09", label_created_at="2026-11-02T08:00:00Z",
                    shipped_at="2026-11-02T16:00:00Z",
                    origin={"postal_code": "07001", "country": "US"},
                    destination={"postal_code": "94107", "country": "US"})
    assert (await hooks.put(f"/v1/shipments/{SHIPMENT_ID}", json=ours, headers=admin)).status == 201
    # ...and EasyPost has sent the carrier's estimate.
    tracker = json.loads(fixture("easypost/tracker_updated_in_transit.json"))
    tracker["result"].update(carrier="UPS", tracking_code="1Z2345")
    assert (await post("easypost", json.dumps(tracker).encode())).status == 200
    # Shopify's fulfilment has no origin (null, as documented), a destination and a label time.
    created = await post("shopify", fixture("shopify/fulfillments_create.json"),
                         **_topic("fulfillments/create", "w-1"))
    assert created.status == 200, await created.text()

    shown = await _shipment(hooks, admin)
    assert shown["service_level"] == "express"
    assert shown["weight_grams"] == 1200
    assert shown["promised_delivery_date"] == "2026-11-09"
    assert shown["shipped_at"] == "2026-11-02T16:00:00Z"
    assert shown["origin"] == {"postal_code": "07001", "country": "US"}
    assert shown["carrier_estimate"] == {"date": "2026-11-06",
                                         "source": "easypost:est_delivery_date_local"}
    # What Shopify does carry is Shopify's.
    assert shown["destination"] == {"postal_code": "94105", "country": "US"}
    assert shown["label_created_at"] == "2026-11-02T14:00:00Z"
    assert (shown["carrier"], shown["tracking_number"], shown["order_id"]) == (
        "ups", "1Z2345", ORDER_ID)

    # An update that does carry the origin changes it, and still nothing else of ours.
    update = await post("shopify", fixture("shopify/fulfillments_update_in_transit.json"),
                        **_topic("fulfillments/update", "w-2"))
    assert update.status == 200
    shown = await _shipment(hooks, admin)
    assert shown["origin"] == {"postal_code": "10001", "country": "US"}
    assert (shown["promised_delivery_date"], shown["service_level"]) == ("2026-11-09", "express")
    assert shown["status"] == "in_transit"

    # Our own PUT is still last-write-wins on the whole document.
    replaced = shipment(ORDER_ID, "1Z2345", promised_delivery_date=None, weight_grams=None)
    assert (await hooks.put(f"/v1/shipments/{SHIPMENT_ID}", json=replaced,
                            headers=admin)).status == 200
    shown = await _shipment(hooks, admin)
    assert (shown["promised_delivery_date"], shown["weight_grams"]) == (None, None)
    assert shown["service_level"] == "ground"


async def test_a_new_fulfilment_takes_our_defaults(
    post: Post, hooks: TestClient, admin: dict[str, str]
) -> None:
    answer = await post("shopify", fixture("shopify/fulfillments_create.json"),
                        **_topic("fulfillments/create", "w-1"))
    assert answer.status == 200
    shown = await _shipment(hooks, admin)
    assert shown["service_level"] == "ground"
    assert shown["origin"] == {"postal_code": None, "country": None}
    assert shown["promised_delivery_date"] is None


async def test_an_order_update_keeps_contact_details_shopify_does_not_give(
    post: Post, hooks: TestClient, admin: dict[str, str]
) -> None:
    ours = order(customer={"name": "Johann Schmidt", "email": "johann@example.de",
                           "phone": "+4915123456789", "locale": "de",
                           "timezone": "Europe/Berlin"},
                 consent={"email": False, "sms": True})
    assert (await hooks.put(f"/v1/orders/{ORDER_ID}", json=ours, headers=admin)).status == 201
    # As in Shopify's documented sample: no locale given, no usable phone (order and customer
    # phones null, the shipping one not a number), no SMS consent object, a Kentucky address.
    sent = json.loads(fixture("shopify/orders_create.json"))
    sent["customer_locale"] = None
    sent["shipping_address"]["phone"] = "555-555-SHIP"
    del sent["customer"]["sms_marketing_consent"]
    sent["shipping_address"].update(zip="40003", city="Shippington", province_code="KY",
                                    province="Kentucky")
    answer = await post("shopify", json.dumps(sent).encode(),
                        **_topic("orders/updated", "w-3"))
    assert answer.status == 200, await answer.text()

    shown = await (await hooks.get(f"/v1/orders/{ORDER_ID}", headers=admin)).json()
    assert shown["customer"]["locale"] == "de"
    assert shown["customer"]["phone"] == "+4915123456789"
    assert shown["consent"] == {"email": False, "sms": True}
    # Given by Shopify, so Shopify's.
    assert shown["customer"]["name"] == "John Smith"
    assert shown["customer"]["email"] == "jon@example.com"
    assert shown["customer"]["timezone"] == "America/New_York"
    assert shown["placed_at"] == "2026-11-01T17:30:00Z"
    assert [item["sku"] for item in shown["items"]] == ["SKU2006-001", "SKU2006-020"]

    # Shopify stating SMS consent (here: withdrawn) does change it.
    sent["customer"]["sms_marketing_consent"] = {"state": "unsubscribed"}
    assert (await post("shopify", json.dumps(sent).encode(),
                       **_topic("orders/updated", "w-4"))).status == 200
    shown = await (await hooks.get(f"/v1/orders/{ORDER_ID}", headers=admin)).json()
    assert shown["consent"] == {"email": False, "sms": False}
    assert shown["customer"]["locale"] == "de"
