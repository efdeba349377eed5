"""Shopify order and fulfilment webhooks (topic in X-Shopify-Topic).

orders/create, orders/updated: the order (ids prefixed "shopify-"), its customer's name,
e-mail, phone (to E.164, using the shipping country), locale (customer_locale), a timezone
from the shipping address, SMS consent from sms_marketing_consent, line items, and any
fulfilments it carries. fulfillments/create, fulfillments/update: one shipment per
tracking number (carrier from tracking_company), plus an event for its shipment_status
(or "cancelled" for a cancelled fulfilment), stamped with the fulfilment's updated_at.
fulfillment_events/create: a carrier scan of a fulfilment Shopify already sent (status,
message, happened_at, city/province/zip) as an event of each of its shipments, and its
estimated_delivery_at as the carrier estimate (as of the event's updated_at). An event for a
fulfilment not stored yet is noted; `webhooks reprocess` applies it once the fulfilment is.

Versions: an order or fulfilment is applied only when its `updated_at` is not older than the
version stored (Shopify does not deliver in order; an older orders/updated arriving late
changes nothing).

Dropped from structured data (kept in the delivery's raw body; tracking URLs also in the
event payload): prices, taxes, discounts, addresses beyond ZIP/country, tracking URLs,
notes, tags. A contact value Shopify lets through but we cannot use (a phone that is not a
valid number) is left out rather than rejecting the whole order.

Merge semantics: Shopify's orders and fulfilments are partial views, so each update says
which fields Shopify stated (a value absent, null or unusable states nothing). A stored
order keeps its locale, phone, e-mail, timezone and SMS consent unless Shopify gives one;
e-mail consent is ours (transactional mail needs no marketing consent), never Shopify's. A
stored shipment keeps its service level, weight, promised date and shipped time (Shopify
carries none of them) and its origin/destination parts unless Shopify gives them; order,
carrier, tracking number and label time are Shopify's. A new row takes our defaults
(service level "ground", locale "en", e-mail consent on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import Field, ValidationError

from service.errors import FieldError
from service.inputs import LOCALE_RE, OrderIn, ShipmentIn, Timestamp
from service.integrations import (
    CarrierEstimate,
    MappingError,
    OrderUpdate,
    Shape,
    ShipmentUpdate,
    WebhookBatch,
    estimate_problem,
    event_row,
    known_carrier,
    location,
    shape_errors,
    skipped,
    validate_shape,
)
from service.tracking.carrier_codes import Mapped, from_shopify
from service.tracking.numbers import normalized_tracking_number
from service.zones import address_zone

ORDER_TOPICS = frozenset({"orders/create", "orders/updated"})
FULFILLMENT_TOPICS = frozenset({"fulfillments/create", "fulfillments/update"})
FULFILLMENT_EVENT_TOPIC = "fulfillment_events/create"
ShopifyId = Annotated[int, Field(gt=0)]


class Address(Shape):
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    zip: str | None = None
    country_code: str | None = None
    province_code: str | None = None
    phone: str | None = None


class Consent(Shape):
    state: str | None = None


class Customer(Shape):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    sms_marketing_consent: Consent | None = None


class LineItem(Shape):
    sku: str | None = None
    name: str | None = None
    title: str | None = None
    quantity: Annotated[int, Field(ge=0)] = 1


class Fulfillment(Shape):
    id: ShopifyId
    order_id: ShopifyId
    status: str | None = None
    created_at: Timestamp
    updated_at: Timestamp | None = None
    tracking_company: str | None = None
    tracking_number: str | None = None
    tracking_numbers: list[str] = []
    tracking_url: str | None = None
    tracking_urls: list[str] = []
    shipment_status: str | None = None
    destination: Address | None = None
    origin_address: Address | None = None


class FulfillmentEvent(Shape):
    id: ShopifyId
    fulfillment_id: ShopifyId
    order_id: ShopifyId | None = None
    status: str | None = None
    message: str | None = None
    happened_at: Timestamp | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    estimated_delivery_at: str | None = None
    city: str | None = None
    province: str | None = None
    zip: str | None = None
    country: str | None = None


class Order(Shape):
    id: ShopifyId
    name: str | None = None
    email: str | None = None
    contact_email: str | None = None
    phone: str | None = None
    created_at: Timestamp
    updated_at: Timestamp | None = None
    customer_locale: str | None = None
    customer: Customer | None = None
    shipping_address: Address | None = None
    line_items: list[LineItem] = []
    fulfillments: list[Fulfillment] = []


def order_id(shopify_id: int) -> str:
    return f"shopify-{shopify_id}"


def _email(*candidates: str | None) -> str | None:
    for value in candidates:
        if value:
            try:
                return validate_email(value, check_deliverability=False).normalized
            except EmailNotValidError:
                continue
    return None


def _phone(region: str | None, *candidates: str | None) -> str | None:
    # Shopify stores phones as typed ("(555) 625-1199"); the shipping country is the region.
    for value in candidates:
        if value:
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _locale(value: str | None) -> str:
    if not value:
        return "en"
    language, _, region = value.replace("_", "-").partition("-")
    tag = f"{language.lower()}-{region.upper()}" if region else language.lower()
    if LOCALE_RE.match(tag):
        return tag
    return language.lower() if LOCALE_RE.match(language.lower()) else "en"


def _text(value: str | None) -> str | None:
    value = " ".join(value.split()) if value else None
    return value[:200] if value else None


def map_order(order: Order) -> tuple[OrderIn, frozenset[str]]:
    """Our order, and the fields Shopify stated (the rest keep their stored values)."""
    customer = order.customer or Customer()
    ship_to = order.shipping_address or Address()
    name = _text(" ".join(p for p in (customer.first_name, customer.last_name) if p)
                 or ship_to.name)
    sms = customer.sms_marketing_consent.state if customer.sms_marketing_consent else None
    data: dict[str, Any] = {
        "placed_at": order.created_at.isoformat(),
        "customer": {
            "name": name,
            "email": _email(order.email, order.contact_email, customer.email),
            "phone": _phone(ship_to.country_code, order.phone, customer.phone, ship_to.phone),
            "locale": _locale(order.customer_locale),
            "timezone": address_zone(ship_to.zip, ship_to.country_code, ship_to.province_code),
        },
        # Transactional e-mail needs no marketing consent; SMS does need the customer's yes.
        "consent": {"email": True, "sms": sms == "subscribed"},
        "items": [{"sku": _text(item.sku), "name": _text(item.name or item.title) or "item",
                   "quantity": max(item.quantity, 1)} for item in order.line_items[:500]],
    }
    stated = {
        "placed_at": True,
        "customer.name": name is not None,
        "customer.email": data["customer"]["email"] is not None,
        "customer.phone": data["customer"]["phone"] is not None,
        "customer.locale": bool(order.customer_locale),
        "customer.timezone": data["customer"]["timezone"] is not None,
        "consent.sms": bool(sms),
        "items": "line_items" in order.model_fields_set,
    }
    try:
        mapped = OrderIn.model_validate(data)
    except ValidationError as exc:
        raise MappingError(shape_errors(exc, "order")) from None
    return mapped, frozenset(name for name, given in stated.items() if given)


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def map_fulfillment(fulfillment: Fulfillment, where: str, batch: WebhookBatch) -> None:
    """Add the fulfilment's shipments (one per tracking number) and status event to `batch`."""
    given: list[str | None] = list(fulfillment.tracking_numbers) or [fulfillment.tracking_number]
    numbers = [normalized_tracking_number(n) for n in given if n and n.strip()]
    if not numbers:
        return  # nothing trackable yet; a later fulfillments/update brings the number
    carrier = known_carrier(fulfillment.tracking_company, _at(where, "tracking_company"),
                            batch.notes, numbers[0])
    urls = fulfillment.tracking_urls or ([fulfillment.tracking_url] if fulfillment.tracking_url else [])
    origin = fulfillment.origin_address or Address()
    destination = fulfillment.destination or Address()
    for index, number in enumerate(numbers):
        shipment_id = f"shopify-{fulfillment.id}" + (f"-{index + 1}" if index else "")
        data = {
            "order_id": order_id(fulfillment.order_id), "carrier": carrier,
            # Shopify's fulfilment carries no service level: a default for a new shipment.
            "service_level": "ground", "tracking_number": number,
            "origin": {"postal_code": origin.zip, "country": origin.country_code},
            "destination": {"postal_code": destination.zip, "country": destination.country_code},
            "label_created_at": fulfillment.created_at.isoformat(),
        }
        stated = {"order_id", "carrier", "tracking_number", "label_created_at"} | {
            name for name, value in (
                ("origin.postal_code", origin.zip), ("origin.country", origin.country_code),
                ("destination.postal_code", destination.zip),
                ("destination.country", destination.country_code)) if value}
        try:
            batch.shipments.append(ShipmentUpdate(
                shipment_id, ShipmentIn.model_validate(data), frozenset(stated),
                fulfillment.updated_at))
        except ValidationError as exc:
            # Name the sender's field, not ours; the rest of the delivery is stored.
            batch.notes.extend(skipped(MappingError([FieldError(
                _at(where, f"tracking_numbers.{index}") if e.field == "tracking_number"
                else _at(where, e.field), e.message, e.code,
            ) for e in shape_errors(exc)])))
            continue
        raw = fulfillment.shipment_status
        if fulfillment.status == "cancelled":
            mapped = Mapped("cancelled", "", "fulfillment_cancelled")
        elif raw:
            mapped = from_shopify(raw)
        else:
            continue
        payload = {"source": "shopify", "fulfillment_id": fulfillment.id,
                   "shipment_status": fulfillment.shipment_status, "status": fulfillment.status,
                   "tracking_company": fulfillment.tracking_company,
                   "tracking_url": urls[index] if index < len(urls) else None}
        try:
            batch.events.append(event_row(
                where, payload, mapped, carrier=carrier, tracking_number=number,
                occurred_at=fulfillment.updated_at or fulfillment.created_at,
                # One event per (fulfilment, status): a resent update is the same scan.
                event_id=f"shopify:{fulfillment.id}:{mapped.raw_code}",
            ))
        except MappingError as exc:
            batch.notes.extend(skipped(exc))


@dataclass(frozen=True)
class EventUpdate:
    """A fulfilment event: needs the fulfilment's stored shipments to land anywhere."""

    event: FulfillmentEvent
    raw: dict[str, Any]

    @property
    def fulfillment_id(self) -> int:
        return self.event.fulfillment_id

    def batch(self, targets: list[tuple[str, str]]) -> WebhookBatch:
        """The event (and estimate) for each (carrier, tracking number) of the fulfilment."""
        event = self.event
        if not targets:
            return WebhookBatch(notes=[
                f"fulfillment_id: fulfilment {event.fulfillment_id} is not stored yet; this "
                "event is kept in the delivery (webhooks reprocess applies it once it is)"])
        batch = WebhookBatch()
        raw = event.status
        mapped = from_shopify(raw) if raw else None
        when = event.happened_at or event.created_at
        as_of = event.updated_at or event.created_at or event.happened_at
        day = _day(event.estimated_delivery_at)
        why = estimate_problem(day, as_of) if day else None
        if why:
            batch.notes.append(f"estimated_delivery_at: {why}; not stored")
        if mapped is None or when is None:
            batch.notes.append("status/happened_at: missing; no event stored")
        for carrier, number in targets:
            if mapped is not None and when is not None:
                batch.events.append(event_row(
                    "", {"source": "shopify", "fulfillment_event": self.raw}, mapped,
                    carrier=carrier, tracking_number=number,
                    occurred_at=when, description=event.message,
                    location=location(event.city, event.province, event.zip),
                    event_id=f"shopify-event:{event.id}"))
            if day and not why:
                batch.estimates.append(CarrierEstimate(
                    carrier, number, day, "shopify:estimated_delivery_at", as_of))
        return batch


def _day(value: str | None) -> date | None:
    """The calendar day of a Shopify time as Shopify states it (its own offset)."""
    try:
        return date.fromisoformat(value[:10]) if value and len(value) >= 10 else None
    except ValueError:
        return None


def parse(topic: str | None, payload: Any) -> WebhookBatch | EventUpdate:
    """What one Shopify delivery writes; unknown topics are acknowledged and ignored."""
    if not topic:
        raise MappingError([FieldError("X-Shopify-Topic", "header is missing", "missing")])
    batch = WebhookBatch()
    if topic in ORDER_TOPICS:
        order = validate_shape(Order, payload)
        batch.orders.append(OrderUpdate(order_id(order.id), *map_order(order), order.updated_at))
        for index, fulfillment in enumerate(order.fulfillments):
            map_fulfillment(fulfillment, f"fulfillments.{index}", batch)
    elif topic in FULFILLMENT_TOPICS:
        map_fulfillment(validate_shape(Fulfillment, payload), "", batch)
        if not batch.shipments:
            batch.ignored = "fulfillment has no tracking number yet"
    elif topic == FULFILLMENT_EVENT_TOPIC:
        return EventUpdate(validate_shape(FulfillmentEvent, payload), payload)
    else:
        batch.ignored = f"topic {topic!r} is not handled"
    return batch
