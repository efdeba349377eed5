"""Shapes for the OpenAPI document: responses (tests check real responses against them)
and the bodies of senders' webhooks (validated by their adapters, described here)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from service.integrations import aftership, easypost, shopify


class FieldErrorOut(BaseModel):
    field: str
    message: str
    code: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldErrorOut] | None = None


class EventOut(BaseModel):
    status: str
    raw_code: str | None
    description: str | None
    location: dict[str, str] | None
    occurred_at: str
    received_at: str
    event_id: str | None
    substatus: str | None = None


class AddressOut(BaseModel):
    postal_code: str | None
    country: str | None


class EtaOut(BaseModel):
    earliest: str
    likely: str
    latest: str
    local: dict[str, str | None]
    probability_late: float | None
    model_version: str
    predicted_at: str
    stage: str
    reasons: list[dict[str, Any]]
    first_shown: dict[str, str] | None


class ShipmentOut(BaseModel):
    shipment_id: str
    order_id: str
    carrier: str
    carrier_name: str
    service_level: str
    tracking_number: str
    origin: AddressOut
    destination: AddressOut
    weight_grams: int | None
    promised_delivery_date: str | None
    label_created_at: str | None
    shipped_at: str | None
    status: str
    substatus: str | None = None
    status_at: str | None
    delivered_at: str | None
    event_count: int
    last_event_at: str | None
    carrier_estimate: dict[str, str | None] | None
    eta: EtaOut | None
    timeline: list[EventOut]
    updated_at: str


class ShipmentList(BaseModel):
    shipments: list[ShipmentOut]


class OrderOut(BaseModel):
    order_id: str
    placed_at: str | None
    customer: dict[str, str | None]
    consent: dict[str, bool]
    items: list[dict[str, Any]]
    shipments: list[ShipmentOut]
    updated_at: str


class Upserted(BaseModel):
    created: bool
    order_id: str | None = None
    shipment_id: str | None = None


class ItemErrors(BaseModel):
    index: int
    errors: list[dict[str, str]]


class IngestOutcome(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    errors: list[ItemErrors]


class Status(BaseModel):
    status: str
    checks: dict[str, str] | None = None


class QuoteOption(BaseModel):
    carrier: str
    service_level: str
    earliest: str
    likely: str
    latest: str


class QuoteOut(BaseModel):
    order_time: str
    model_version: str
    options: list[QuoteOption]


class WebhookAnswer(BaseModel):
    """What a webhook answers for a delivery it kept."""

    model_config = ConfigDict(extra="allow")
    status: Literal["processed", "ignored", "duplicate"]
    delivery_id: str
    orders: int | None = None
    shipments: int | None = None
    events: dict[str, int] | None = None
    estimates: int | None = None
    ignored: str | None = None
    kept_newer: int | None = None
    estimates_kept_for_later: int | None = Field(
        None, description="carrier estimates kept for a shipment not known yet")
    notes: list[str] | None = Field(
        None, description="parts of the delivery not stored (or stored changed), and why")


class ShopifyDelivery(RootModel[shopify.Order | shopify.Fulfillment | shopify.FulfillmentEvent]):
    """An order (orders/create, orders/updated), a fulfilment (fulfillments/*) or a fulfilment
    event (fulfillment_events/create), as the X-Shopify-Topic header says; other topics are
    acknowledged and ignored."""


class EasyPostDelivery(easypost.Event):
    """An EasyPost Event; for tracker.created/tracker.updated its result is a Tracker."""

    result: easypost.Tracker | dict[str, Any] | None = None  # type: ignore[assignment]


class AfterShipDelivery(aftership.Envelope):
    """An AfterShip webhook: the tracking in `msg`."""

    msg: aftership.Tracking  # type: ignore[assignment]


SidText = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,64}$")]


class TwilioInbound(BaseModel):
    """The fields of Twilio's inbound-message request we use (it sends more)."""

    model_config = ConfigDict(extra="allow")
    From: Annotated[str, Field(min_length=1, max_length=64)]
    Body: str = ""
    MessageSid: SidText | None = None


class TwilioStatus(BaseModel):
    """The fields of Twilio's status callback we use (it sends more)."""

    model_config = ConfigDict(extra="allow")
    MessageSid: SidText
    MessageStatus: Annotated[str, Field(pattern=r"^[a-z_\-]{1,32}$")]


# The forms our own pages post (documented; the pages read them leniently and answer a
# missing or wrong field with a page of their own, never a 500).
class SignInForm(BaseModel):
    key: str


class CsrfForm(BaseModel):
    csrf: str


class SupportActionForm(BaseModel):
    csrf: str
    note: str = ""
    notification_id: str | None = None
    muted: Literal["true", "false"] | None = None


class LookupForm(BaseModel):
    order: str
    contact: str  # the e-mail address or postcode the order was placed with
    lang: str | None = None


class PreferencesForm(BaseModel):
    channel: Literal["email", "sms"]
    action: Literal["stop", "resume"]
