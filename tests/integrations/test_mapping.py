"""Pure parts: signatures, the code tables, zone inference, and each adapter's mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from datetime import UTC, date, datetime

import pytest

from service.inputs import Location
from service.integrations import MappingError, aftership, easypost, shopify
from service.security.webhook_signatures import (
    aftership_valid,
    easypost_signature,
    easypost_valid,
    shopify_signature,
    shopify_valid,
)
from service.tracking.carrier_codes import carrier_slug, normalize_carrier
from service.tracking.ingest import time_key
from service.tracking.taxonomy import normalize_status
from service.zones import resolve
from tests.integrations.conftest import FIXTURES, SECRETS


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_carrier_names_and_codes_go_through_the_tables() -> None:
    assert [carrier_slug(n) for n in ("UPS", "FedEx", "USPS", "DHL Express", "DHLExpress",
                                      "dhl", "canada-post", "Royal Mail", "Nope Express")] == [
        "ups", "fedex", "usps", "dhl", "dhl", "dhl", "canada_post", "royal_mail", None]
    assert [normalize_carrier(n) for n in ("U.P.S.", "Fedex Ground", "DHL Express", None, "",
                                           "Other", "Bob's Couriers Ltd.")] == [
        "ups", "fedex", "dhl", "other:unknown", "other:unknown", "other:other",
        "other:bob-s-couriers-ltd"]
    # taxonomy goes through the tables; unknown codes stay unknown and raw.
    assert normalize_status("fedex", "OD") == ("out_for_delivery", "", "OD")
    assert normalize_status("usps", "16") == ("available_for_pickup", "post_office", "16")
    assert normalize_status("ups", "QQ") == ("unknown", "", "QQ")
    # Sub-statuses are kept, and a parcel waiting at an access point is not delivered.
    assert normalize_status("ups", "KB") == ("delivered", "signature_obtained", "KB")
    assert normalize_status("ups", "ZP") == ("available_for_pickup", "access_point", "ZP")


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
    # A Canadian FSA's province, an Australian postcode's state (no ZIP to go by).
    ("2026-11-03T10:00:00", {"postal_code": "M5V 3L9", "country": "CA"},
     "2026-11-03T15:00:00", "postal_code"),
    ("2026-11-03T10:00:00", {"postal_code": "6000", "country": "AU"},
     "2026-11-03T02:00:00", "postal_code"),
    # City + state before the state's main zone: El Paso keeps Mountain time, Texas is Central.
    ("2026-11-03T10:00:00", {"city": "El Paso", "region": "TX"}, "2026-11-03T17:00:00",
     "city_region"),
    ("2026-11-03T10:00:00", {"region": "TX"}, "2026-11-03T16:00:00", "region"),
    ("2026-11-03T10:00:00", {"city": "Vancouver", "region": "BC", "country": "CA"},
     "2026-11-03T18:00:00", "city_region"),
    ("2026-11-03T10:00:00", {"country": "GB"}, "2026-11-03T10:00:00", "country"),
])
def test_naive_times_take_the_zone_of_their_location(
    when: str, where: dict[str, str], utc: str, basis: str
) -> None:
    resolved = resolve(when, **where)
    assert resolved.at == datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert resolved.basis == basis
    assert resolved.inferred is (basis != "offset")


@pytest.mark.parametrize(("naive", "aware", "where", "certain"), [
    ("2026-11-03T04:12:00", "2026-11-03T10:12:00Z", {"postal_code": "38118"}, True),
    ("2026-11-03T09:30:00", "2026-11-03T09:30:00-08:00", {"region": "WA", "country": "US"},
     False),
    ("2026-11-03T09:30:00", "2026-11-03T17:30:00Z", {"region": "WA", "country": "US"}, False),
    ("2026-11-03T22:05:00", "2026-11-03T22:05:00-05:00", {}, False),
    # No location: both copies read in the shipment's origin zone, even an offset in UTC.
    ("2026-11-03T22:05:00", "2026-11-04T03:05:00Z", {"fallback_zone": "America/New_York"},
     False),
])
def test_one_scan_with_and_without_offset_has_one_time_key(
    naive: str, aware: str, where: dict[str, str], certain: bool
) -> None:
    place = Location(city=where.get("city"), region=where.get("region"),
                     postal_code=where.get("postal_code"), country=where.get("country"))
    first, second = resolve(naive, **where), resolve(aware, **where)
    assert time_key(first, place) == time_key(second, place)
    assert time_key(first, place).startswith("utc:" if certain else "local:")
    # A different wall time or place is a different scan.
    other = resolve(naive[:11] + "23:59:00", **where)
    assert time_key(other, place) != time_key(first, place)


def test_shopify_order_maps_contact_locale_timezone_and_consent() -> None:
    batch = shopify.parse("orders/create", load("shopify/orders_create.json"))
    (order_id, order, carried, _), = batch.orders
    assert order_id == "shopify-820982911946154508"
    # E-mail consent is ours, never Shopify's; everything else here Shopify stated.
    assert carried == {"placed_at", "customer.name", "customer.email", "customer.phone",
                       "customer.locale", "customer.timezone", "consent.sms", "items"}
    assert order.placed_at == datetime(2026, 11, 1, 17, 30, tzinfo=UTC)
    assert order.customer.name == "John Smith"
    assert order.customer.email == "jon@example.com"
    assert order.customer.phone == "+14155552671"  # from the shipping address, to E.164
    assert order.customer.timezone == "America/Los_Angeles"  # ZIP 94105
    assert order.consent.sms is True and order.consent.email is True
    assert [(i.sku, i.name, i.quantity) for i in order.items] == [
        ("SKU2006-001", "Aviator sunglasses", 1), ("SKU2006-020", "Mid-century lounger", 2)]


def test_shopify_fulfillment_maps_shipment_and_status_event() -> None:
    batch = shopify.parse("fulfillments/update",
                          load("shopify/fulfillments_update_in_transit.json"))
    (shipment_id, shipment, carried, _), = batch.shipments
    # Shopify states no service level, weight, promise or shipped time: those stay ours.
    assert carried == {"order_id", "carrier", "tracking_number", "label_created_at",
                       "origin.postal_code", "origin.country", "destination.postal_code",
                       "destination.country"}
    assert (shipment_id, shipment.carrier, shipment.tracking_number) == ("shopify-123456", "ups",
                                                                         "1Z2345")
    assert shipment.origin.postal_code == "10001" and shipment.destination.postal_code == "94105"
    (row,) = batch.events
    assert (row.status, row.raw_code) == ("in_transit", "in_transit")
    assert json.loads(row.payload)["tracking_url"].endswith("trackNums=1Z2345")
    assert shopify.parse("products/create", {}).ignored


def test_easypost_unknown_carrier_is_tracked_and_missing_fields_name_the_field() -> None:
    event = load("easypost/tracker_created.json")
    event["result"]["carrier"] = "Pigeon Post"
    update = easypost.parse(event)
    assert isinstance(update, easypost.TrackerUpdate)
    assert update.carrier == "other:pigeon-post"
    batch = update.batch(None)
    assert {row.carrier for row in batch.events} == {"other:pigeon-post"}
    assert any("'Pigeon Post' is not one we know" in note for note in batch.notes)
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


def test_aftership_checkpoint_without_a_time_is_skipped_not_refused() -> None:
    # AfterShip documents checkpoint_time as "", a date, a local or an offset date-time.
    update = aftership.parse(load("aftership/tracking_update_departed.json"))
    assert isinstance(update, aftership.TrackingUpdate)
    batch = update.batch(None)
    assert [row.raw_code for row in batch.events] == [
        "InfoReceived_001", "InTransit_002", "InTransit_003", "InTransit_007"]
    assert batch.notes == ["msg.checkpoints.4: no checkpoint_time; not stored as an event"]
    # A date alone is a day at the checkpoint (midnight there), inferred and said so.
    day = load("aftership/tracking_update_departed.json")
    day["msg"]["checkpoints"][4]["checkpoint_time"] = "2026-11-04"
    day["msg"]["checkpoints"][4].update(zip="75261", state="TX", country_iso3="USA")
    dated = aftership.parse(day)
    assert isinstance(dated, aftership.TrackingUpdate)
    row = dated.batch(None).events[4]
    assert row.occurred_at == datetime(2026, 11, 4, 6, tzinfo=UTC)
    assert json.loads(row.payload)["time"] == {"inferred": True, "basis": "zip",
                                               "zone": "America/Chicago", "date_only": True}


def test_aftership_2024_checkpoint_names_locate_a_naive_time() -> None:
    body = load("aftership/tracking_update_departed.json")
    checkpoint = body["msg"]["checkpoints"][2]
    for old, new in (("zip", "postal_code"), ("country_iso3", "country_region")):
        checkpoint[new] = checkpoint.pop(old)
    update = aftership.parse(body)
    assert isinstance(update, aftership.TrackingUpdate)
    row = update.batch(None).events[2]
    assert row.occurred_at == datetime(2026, 11, 4, 4, 47, tzinfo=UTC)  # Dallas, CST
    assert json.loads(row.location or "{}") == {"city": "DALLAS", "region": "TX",
                                               "postal_code": "75261", "country": "US"}


def test_shopify_documented_sample_values_map_without_inventing_data() -> None:
    # Shopify's fulfilments/create sample: pending, no shipment_status, no origin, no service.
    fulfillment = load("shopify/fulfillments_create.json")
    fulfillment.update(status="pending", shipment_status=None, service=None, location_id=None)
    batch = shopify.parse("fulfillments/create", fulfillment)
    (_, shipment, carried, _), = batch.shipments
    assert batch.events == [] and shipment.origin.postal_code is None
    assert carried == {"order_id", "carrier", "tracking_number", "label_created_at",
                       "destination.postal_code", "destination.country"}
    # Its orders/create sample: no order or customer phone, a shipping phone that is not a
    # number, no SMS consent object, a Kentucky address.
    order = load("shopify/orders_create.json")
    order["shipping_address"].update(phone="555-555-SHIP", zip="40003", province_code="KY")
    del order["customer"]["sms_marketing_consent"], order["customer"]["email_marketing_consent"]
    (_, mapped, carried, _), = shopify.parse("orders/create", order).orders
    assert mapped.customer.phone is None and mapped.consent.sms is False
    assert "customer.phone" not in carried and "consent.sms" not in carried
    assert mapped.customer.timezone == "America/New_York"


def test_easypost_documented_empty_carrier_code_and_unknown_status() -> None:
    event = load("easypost/tracker_updated_in_transit.json")
    detail = event["result"]["tracking_details"][3]
    detail.update(carrier_code="", status="unknown", status_detail="unknown")
    update = easypost.parse(event)
    assert isinstance(update, easypost.TrackerUpdate)
    row = update.batch(None).events[3]
    assert (row.status, row.raw_code) == ("unknown", "unknown/unknown")


def test_an_aggregators_status_takes_the_carriers_substatus_when_they_agree() -> None:
    from service.tracking.carrier_codes import from_aftership, from_easypost

    assert from_easypost("ups", "delivered", None, "KB") == (
        "delivered", "signature_obtained", "delivered")
    assert from_easypost("ups", "in_transit", "arrived_at_pickup_location", "ZP") == (
        "available_for_pickup", "access_point", "in_transit/arrived_at_pickup_location")
    assert from_easypost("usps", "unknown", None, "ZZ9") == ("unknown", "", "ZZ9")
    assert from_easypost("usps", "error", None, None).status == "unknown"
    assert from_aftership("ups", "Delivered", "Delivered_001", "KB") == (
        "delivered", "signature_obtained", "Delivered_001")
    assert from_aftership("ups", "Exception", None, "KB").substatus == ""  # they disagree


def test_a_tracking_numbers_shape_names_the_carrier_only_when_none_is_named() -> None:
    from service.tracking.carrier_codes import carrier_for

    assert carrier_for(None, "1z999aa10123456784") == "ups"
    assert carrier_for("Other", "9400 1108 9882 5022 5794 93") == "usps"
    assert carrier_for("", "12345") == "other:unknown"
    assert carrier_for("FedEx", "1Z999AA10123456784") == "fedex"  # what the sender says wins
