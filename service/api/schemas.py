"""Response shapes, for the OpenAPI document (tests check real responses against them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class EventOut(BaseModel):
    status: str
    raw_code: str | None
    description: str | None
    location: dict[str, str] | None
    occurred_at: str
    received_at: str
    event_id: str | None


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
