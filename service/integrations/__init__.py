"""Webhook integrations: pure mapping from each sender's payloads to our inputs.

No aiohttp and no SQL here. Each adapter validates the sender's payload shape (pydantic,
so a malformed body yields field errors with paths) and returns a WebhookBatch made of
the same inputs the JSON API uses: OrderIn, ShipmentIn, and tracking events turned into
rows by service.tracking.ingest.to_row, so webhooks and the API cannot disagree about a scan.

Orders and shipments from a sender are partial: each says which fields the sender actually
stated (`carried`). Written with merge semantics, only those change a stored row; the rest
keep what our own API or another sender set (a new row takes the model's defaults).
`pipeline` runs an adapter and writes its batch through service.store, for the webhook
endpoints and for `parcelcast webhooks reprocess`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple, TypeVar

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from service.errors import FieldError
from service.inputs import Location, OrderIn, ShipmentIn, TrackingEventIn
from service.limits import OutOfRange, check_day, near
from service.store.events import EventRow
from service.tracking.carrier_codes import NO_CARRIER, Mapped, carrier_for, is_other
from service.tracking.ingest import event_problems, to_row


class MappingError(Exception):
    """The payload cannot be mapped; carries field errors for a 422 problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors[:5]))
        self.errors = errors


class Shape(BaseModel):
    """A sender's object: unknown fields are ignored (kept in the raw body), not rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class CarrierEstimate:
    """The carrier's own delivery date, as a baseline/feature; `as_of` orders competing ones."""

    carrier: str
    tracking_number: str
    delivery_date: date
    source: str
    as_of: datetime | None = None


# What a sender can state about an order or a shipment: the input model's field paths.
ORDER_FIELDS = frozenset({
    "placed_at", "customer.name", "customer.email", "customer.phone", "customer.locale",
    "customer.timezone", "consent.email", "consent.sms", "items",
})
SHIPMENT_FIELDS = frozenset({
    "order_id", "carrier", "service_level", "tracking_number", "origin.postal_code",
    "origin.country", "destination.postal_code", "destination.country", "weight_grams",
    "promised_delivery_date", "label_created_at", "shipped_at",
})


class OrderUpdate(NamedTuple):
    """An order as a sender knows it: `order` is complete (what a new row is created with);
    only the `carried` fields change a stored one."""

    order_id: str
    order: OrderIn
    carried: frozenset[str]
    updated_at: datetime | None = None  # the sender's version time: an older one changes nothing


class ShipmentUpdate(NamedTuple):
    """A shipment as a sender knows it; see OrderUpdate."""

    shipment_id: str
    shipment: ShipmentIn
    carried: frozenset[str]
    updated_at: datetime | None = None  # see OrderUpdate


@dataclass(frozen=True)
class TrackerState:
    """What an aggregator says about its tracker, not the parcel (EasyPost `error`, AfterShip
    `Expired`): shown to the operator and support, never a customer-facing status."""

    carrier: str
    tracking_number: str
    source: str
    state: str
    detail: str | None = None
    message: str | None = None
    stated_at: datetime | None = None


@dataclass
class WebhookBatch:
    """Everything one delivery writes, in one transaction."""

    orders: list[OrderUpdate] = field(default_factory=list)
    shipments: list[ShipmentUpdate] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    estimates: list[CarrierEstimate] = field(default_factory=list)
    trackers: list[TrackerState] = field(default_factory=list)
    # Set when the delivery is understood but carries nothing we store (e.g. another topic).
    ignored: str | None = None
    # Parts of the payload understood but not stored, e.g. a checkpoint without a time.
    notes: list[str] = field(default_factory=list)


S = TypeVar("S", bound=Shape)


def validate_shape(model: type[S], data: Any, prefix: str = "") -> S:
    """The payload as `model`, or MappingError naming each wrong field."""
    if not isinstance(data, dict):
        raise MappingError([FieldError(prefix or "body", "must be a JSON object", "type")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MappingError(shape_errors(exc, prefix)) from None


def shape_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "timezone_aware":
            message = "timestamp has no timezone; send an offset, e.g. 2026-11-02T14:30:00Z"
        errors.append(FieldError(path or "body", message, err["type"]))
    return errors


def known_carrier(name: str | None, where: str, notes: list[str] | None = None,
                  tracking_number: str | None = None) -> str:
    """Our slug for any courier a sender names: a known one in any spelling, else
    `other:<slug>` (tracked all the same; when none is named, the carrier the tracking number's
    shape names); `notes` says when it is not one we know."""
    slug = carrier_for(name, tracking_number)
    if notes is not None and is_other(slug):
        said = "no carrier named" if slug == NO_CARRIER else f"carrier {name!r} is not one we know"
        notes.append(f"{where}: {said}; tracked as {slug}")
    return slug


def location(city: str | None = None, region: str | None = None, postal_code: str | None = None,
             country: str | None = None) -> Location | None:
    """Our Location from what a sender gives; values that do not fit are left to the payload."""
    def fit(value: str | None, limit: int) -> str | None:
        value = value.strip() if isinstance(value, str) else None
        return value if value and len(value) <= limit else None

    country = country if isinstance(country, str) and len(country) == 2 and country.isupper() else None
    parts = Location(city=fit(city, 200), region=fit(region, 200),
                     postal_code=fit(postal_code, 16), country=country)
    return parts if any((parts.city, parts.region, parts.postal_code, parts.country)) else None


def event_id(source: str, *parts: object) -> str:
    """A stable id for a scan the sender does not number: a hash of what identifies it."""
    basis = orjson.dumps([str(p) if p is not None else None for p in parts])
    return f"{source}:{hashlib.sha256(basis).hexdigest()[:32]}"


def event_row(where: str, payload: dict[str, Any], mapped: Mapped | None = None,
              time_basis: str = "offset", **fields: Any) -> EventRow:
    """Check one event like the API does (msgspec constraints) and make its stored row.

    `payload` (the sender's own object, plus our notes) becomes the stored payload; `mapped`
    (the adapter's reading of the sender's code) gives status, substatus and raw code;
    `time_basis` says how its time was resolved (service.zones.Resolved.basis).
    """
    if mapped is not None:
        fields.update(status=mapped.status, raw_code=mapped.raw_code)
    fields = {k: v for k, v in fields.items() if v is not None}
    if isinstance(fields.get("raw_code"), str):
        fields["raw_code"] = fields["raw_code"][:64]
    if isinstance(fields.get("description"), str):
        fields["description"] = fields["description"][:1000] or None
    try:
        event = msgspec.convert(fields, TrackingEventIn)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `")
        path = at.rstrip("`").removeprefix("$").lstrip(".")
        field = ".".join(p for p in (where, path) if p) or "body"
        raise MappingError([FieldError(field, message)]) from None
    problems = event_problems(event, where)
    if problems:
        raise MappingError(problems)
    return to_row(event, orjson.dumps(payload),
                  mapped.substatus if mapped is not None else "", time_basis)


def estimate_problem(day: date, as_of: datetime | None) -> str | None:
    """Why a sender's estimated delivery date cannot be used, or None (see service.limits)."""
    try:
        check_day(day)
    except OutOfRange as exc:
        return str(exc)
    return near(day, as_of, "the time it was stated") if as_of is not None else None


def skipped(exc: MappingError) -> list[str]:
    """Notes for a part of a delivery left out (the rest of the delivery is stored)."""
    return [f"{e.field}: {e.message}; not stored" for e in exc.errors]
