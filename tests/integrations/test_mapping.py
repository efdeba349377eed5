"""Pure parts: signatures, the code tables, zone inference, and each adapter's mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from datetime import UTC, date, datetime

import pytest

from service.carrier_codes import (
    AFTERSHIP_SUBTAGS,
    AFTERSHIP_TAGS,
    COURIER_ALIASES,
    EASYPOST_DETAILS,
    EASYPOST_STATUSES,
    RAW_CODES,
    SHOPIFY_SHIPMENT_STATUSES,
    carrier_slug,
)
from service.integrations import MappingError, aftership, easypost, shopify
from service.integrations.signatures import (
    aftership_valid,
    easypost_signature,
    easypost_valid,
    shopify_signature,
    shopify_valid,
)
from service.integrations.timezones import resolve
from service.taxonomy import CARRIERS, STATUSES, normalize_status
from tests.integrations.conftest import FIXTURES, SECRETS


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_every_mapping_lands_in_the_taxonomy_and_every_alias_on_a_known_carrier() -> None:
    tables = [*RAW_CODES.values(), AFTERSHIP_TAGS, AFTERSHIP_SUBTAGS, EASYPOST_STATUSES,
              EASYPOST_DETAILS, SHOPIFY_SHIPMENT_STATUSES]
    assert {status for table in tables for status in table.values()} <= set(STATUSES)
    assert set(COURIER_ALIASES.values()) <= set(CARRIERS)
    assert [carrier_slug(n) for n in ("UPS", "FedEx", "USPS", "DHL Express", "DHLExpress",
                                      "dhl", "canada-post", "Royal Mail", "Nope Express")] == [
        "ups", "fedex", "usps", "dhl", "dhl", "dhl", "canada_post", "royal_mail", None]
    # taxonomy goes through the new table; unknown codes stay unknown and raw.
    assert normalize_status("fedex", "OD") == ("out_for_delivery", "OD")
    assert normalize_status("usps", "16") == ("available_for_pickup", "16")
    assert normalize_status("ups", "QQ") == ("unknown", "QQ")


def test_signatures_good_bad_missing() -> None:
    body = b'{"id": 1}'
    good = shopify_signature(SECRETS["shopify"], body)
    assert shopify_valid(SECRETS["shopify"], body, good)
    assert not shopify_valid(SECRETS["shopify"], body + b" ", good)
    assert not shopify_valid("other", body, good)
    assert not shopify_valid(SECRETS["shopify"], body, None)
    assert not shopify_valid(SECRETS["shopify"], body, "ünicode")
    assert not aftership_valid(SECRETS["aftership"], body, good)


def test_easypost_signature_is_hex_over_the_nfkd_normalized_secret() -> None:
    body = b'{"description": "tracker.updated"}'
    secret = SECRETS["easypost"]
    key = unicodedata.normalize("NFKD", secret).encode()
    expected = "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert easypost_signature(secret, body) == expected
    assert easypost_valid(secret, body, expected)
    # Keyed with the raw (unnormalized) secret it would not verify: the secret is not NFKD.
    raw_key = "hmac-sha256-hex=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert not easypost_valid(secret, body, raw_key)
    assert not easypost_valid(secret, body, expected.removeprefix("hmac-sha256-hex="))


@pytest.mark.parametrize(("when", "where", "utc", "basis"), [
    ("2026-11-03T04:12:00", {"postal_code": "38118"}, "2026-11-03T10:12:00", "zip"),
    ("2026-07-03T04:12:00", {"postal_code": "85004-1234"}, "2026-07-03T11:12:00", "zip"),  # AZ: no DST
    ("2026-11-03T10:00:00", {"country": "DEU"}, "2026-11-03T09:00:00", "country"),
    ("2026-11-03T10:00:00", {"region": "WA", "country": "US"}, "2026-11-03T18:00:00", "region"),
    ("2026-11-03T10:00:00", {"city": "Toronto"}, "2026-11-03T15:00:00", "city"),
    ("2026-11-03T10:00:00", {"fallback_zone": "America/New_York"}, "2026-11-03T15:00:00", "origin"),
    ("2026-11-03T10:00:00", {"country": "ES"}, "2026-11-03T10:00:00", "utc_default"),
    ("2026-11-03T10:00:00+01:00", {"postal_code": "38118"}, "2026-11-03T09:00:00", "offset"),
])
def test_naive_times_take_the_zone_of_their_location(
    when: str, where: dict[str, str], utc: str, basis: str
) -> None:
    resolved = resolve(when, **where)
    assert resolved.at == datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert resolved.basis == basis
    assert resolved.inferred is (basis != "offset")


def test_shopify_order_maps_contact_locale_timezone_and_consent() -> None:
    batch = shopify.parse("orders/create", load("shopify/orders_create.json"))
    (order_id, order), = batch.orders
    assert order_id == "shopify-820982911946154508"
    assert order.placed_at == datetime(2026, 11, 1, 17, 30, tzinfo=UTC)
    assert order.customer.name == "John Smith"
    assert order.customer.email == "jon@example.com"
    assert order.customer.phone == "+14155552671"  # from the shipping address, to E.164
    assert order.customer.timezone == "America/Los_Angeles"  # ZIP 94105
    assert order.consent.sms is True and order.consent.email is True
    assert [(i.sku, i.quantity) for i in order.items] == [("IPOD2008PINK", 1)] * 2


def test_shopify_fulfillment_maps_shipment_and_status_event() -> None:
    batch = shopify.parse("fulfillments/update",
                          load("shopify/fulfillments_update_in_transit.json"))
    (shipment_id, shipment), = batch.shipments
    assert (shipment_id, shipment.carrier, shipment.tracking_number) == ("shopify-123456", "ups",
                                                                         "1Z2345")
    assert shipment.origin.postal_code == "10001" and shipment.destination.postal_code == "94105"
    (row,) = batch.events
    assert (row.status, row.raw_code) == ("in_transit", "in_transit")
    assert json.loads(row.payload)["tracking_url"].endswith("trackNums=1Z2345")
    assert shopify.parse("products/create", {}).ignored


def test_easypost_unknown_carrier_and_missing_fields_name_the_field() -> None:
    event = load("easypost/tracker_created.json")
    event["result"]["carrier"] = "Pigeon Post"
    with pytest.raises(MappingError) as caught:
        easypost.parse(event)
    assert caught.value.errors[0].field == "result.carrier"
    del event["result"]["tracking_code"]
    with pytest.raises(MappingError) as caught:
        easypost.parse(event)
    assert caught.value.errors[0].field == "result.tracking_code"


def test_aftership_prefers_the_couriers_estimate_over_aftership_prediction() -> None:
    update = aftership.parse(load("aftership/tracking_update_delivered.json"))
    assert isinstance(update, aftership.TrackingUpdate)
    batch = update.batch(None)
    (estimate,) = batch.estimates
    assert estimate.delivery_date == date(2026, 11, 5)
    assert estimate.source == "aftership:courier_estimated_delivery_date"
    early = aftership.parse(load("aftership/tracking_update_in_transit.json"))
    assert isinstance(early, aftership.TrackingUpdate)
    assert early.batch(None).estimates[0].source == "aftership:expected_delivery"
