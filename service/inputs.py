"""The API's input shapes, validated once at the edge."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.limits import (
    DATE_PATTERN,
    INSTANT_PATTERN,
    TIME_RANGE_MESSAGE,
    check_day,
    check_instant,
    near,
)
from service.tracking.carrier_codes import NO_CARRIER, carrier_for, normalize_carrier
from service.tracking.numbers import normalized_tracking_number
from service.tracking.taxonomy import CARRIERS, SERVICE_LEVELS

# Our ids (order, shipment) and tracking numbers, in bodies, paths and queries.
ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,100}$"
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                           pattern=ID_PATTERN)
]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


def _known_carrier(value: str) -> str:
    slug = value.strip().lower()
    if slug not in CARRIERS:
        raise ValueError(f"unknown carrier {value!r}; known carriers: {', '.join(sorted(CARRIERS))}")
    return slug


def _any_carrier(value: object) -> str:
    # Any carrier a sender names is kept: ours when known, else `other:<slug>` of the text.
    if value is None:
        return NO_CARRIER
    if not isinstance(value, str):
        raise ValueError("must be a string naming the carrier")
    if len(value) > 200:
        raise ValueError("at most 200 characters")
    return normalize_carrier(value)


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not an E.164 phone number (+country code and digits): {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}, e.g. 'America/Chicago'") from None
    return value


def _locale(value: str) -> str:
    if not LOCALE_RE.match(value):
        raise ValueError("must be a BCP 47 language tag such as 'en', 'de' or 'pt-BR'")
    return value


def _iso_string(value: object) -> object:
    # Lax pydantic would read a number as a Unix timestamp; OMS data in a wrong type is a bug.
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string")
    return value


class _Documented:
    """Adds keywords to a type's JSON schema (what a validator checks, stated for clients)."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, core: Any, handler: GetJsonSchemaHandler
                                     ) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core)
        schema.pop("format", None)  # the pattern says it (see service.limits)
        return {**schema, **self.keywords}


# Between 1970 and 2100: see service.limits.
Timestamp = Annotated[
    AwareDatetime, BeforeValidator(_iso_string), AfterValidator(check_instant),
    _Documented(pattern=INSTANT_PATTERN, description=f"with an offset; {TIME_RANGE_MESSAGE}"),
]
Day = Annotated[date, BeforeValidator(_iso_string), AfterValidator(check_day),
                _Documented(pattern=DATE_PATTERN, description="between 1970 and 2099")]
Carrier = Annotated[str, AfterValidator(_known_carrier),
                    _Documented(enum=sorted(CARRIERS), description="case-insensitive")]
AnyCarrier = Annotated[str, BeforeValidator(_any_carrier), _Documented(
    description="any carrier name or slug; known ones (" + ", ".join(sorted(CARRIERS))
    + ") are recognized in any case and spelling (\"U.P.S.\", \"Fedex Ground\"), others are "
    "kept as other:<slug>")]
def _tracking_number(value: object) -> object:
    # Matched normalized everywhere (case, spaces and dashes do not matter): stored so too.
    return normalized_tracking_number(value) if isinstance(value, str) else value


TrackingNumber = Annotated[Identifier, BeforeValidator(_tracking_number)]
Phone = Annotated[str, AfterValidator(_e164)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
Locale = Annotated[str, AfterValidator(_locale)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Customer(_In):
    name: Text | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    locale: Locale = "en"
    timezone: TimeZoneName | None = None


class Consent(_In):
    # Strict: "yes" or 0 is a bug in the sender, not a consent.
    email: StrictBool = True
    sms: StrictBool = False


class LineItem(_In):
    sku: Text | None = None
    name: Text
    quantity: Annotated[StrictInt, Field(ge=1, le=100_000)] = 1


class OrderIn(_In):
    """PUT /v1/orders/{order_id}: the whole order as the OMS knows it now."""

    placed_at: Timestamp
    customer: Customer = Customer()
    consent: Consent = Consent()
    items: Annotated[list[LineItem], Field(max_length=500)] = []


class Address(_In):
    postal_code: PostalCode | None = None
    country: CountryCode | None = None


class ShipmentIn(_In):
    """PUT /v1/shipments/{shipment_id}: the whole shipment as the OMS knows it now."""

    order_id: Identifier
    carrier: AnyCarrier = NO_CARRIER
    service_level: Annotated[str, Field(json_schema_extra={"enum": list(SERVICE_LEVELS)})]
    tracking_number: TrackingNumber
    origin: Address = Address()
    destination: Address = Address()
    weight_grams: Annotated[StrictInt, Field(gt=0, le=1_000_000)] | None = None
    label_created_at: Timestamp
    shipped_at: Timestamp | None = None
    # After label_created_at, which its check reads.
    promised_delivery_date: Annotated[
        Day | None, Field(description="within 3 years of label_created_at")] = None

    @model_validator(mode="before")
    @classmethod
    def _carrier_from_number(cls, data: Any) -> Any:
        # No carrier named: the tracking number's shape may name it (UPS 1Z…, USPS 9…).
        if isinstance(data, dict) and isinstance(data.get("tracking_number"), str) and (
                data.get("carrier") is None or (isinstance(data.get("carrier"), str)
                                                and not data["carrier"].strip())):
            return {**data, "carrier": carrier_for(None, data["tracking_number"])}
        return data

    @field_validator("service_level")
    @classmethod
    def _service_level(cls, value: str) -> str:
        if value not in SERVICE_LEVELS:
            raise ValueError(f"must be one of: {', '.join(SERVICE_LEVELS)}")
        return value

    @field_validator("promised_delivery_date")
    @classmethod
    def _promise_near_label(cls, value: date | None, info: ValidationInfo) -> date | None:
        label = info.data.get("label_created_at")
        if value is not None and label is not None:
            why = near(value, label, "label_created_at")
            if why:
                raise PydanticCustomError("date_range", why)
        return value


class Location(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    city: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    region: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    postal_code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] | None = None
    country: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")] | None = None


class TrackingEventIn(msgspec.Struct, frozen=True):
    """One tracking scan in our normalized form.

    msgspec rather than pydantic: this is the hot path (up to 1,000 per request), and
    decoding each item straight from its raw bytes also keeps those bytes as the payload.
    """

    carrier: Annotated[str, msgspec.Meta(min_length=1, max_length=200, extra_json_schema={
        "description": "any carrier name or slug; known ones recognized in any spelling, "
                       "others kept as other:<slug>"})]
    tracking_number: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    # A taxonomy status, or the carrier's raw code (mapped, and kept raw).
    status: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True, extra_json_schema={
        "pattern": INSTANT_PATTERN, "description": f"with an offset; {TIME_RANGE_MESSAGE}"})]
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    raw_code: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    description: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    location: Location | None = None
    # The carrier's own estimated delivery date (local), as stated with this scan; kept on
    # the shipment as its carrier estimate (the newest by occurred_at wins).
    estimated_delivery: Annotated[date, msgspec.Meta(extra_json_schema={
        "pattern": DATE_PATTERN, "description": "within 3 years of occurred_at"})] | None = None


class QuoteIn(_In):
    """POST /v1/eta/quote: a lane and an order time; carrier and service optional."""

    origin: Address
    destination: Address
    order_time: Timestamp
    carrier: Carrier | None = None
    service_level: Annotated[str, Field(json_schema_extra={"enum": list(SERVICE_LEVELS)})
                             ] | None = None

    @field_validator("service_level")
    @classmethod
    def _service_level(cls, value: str | None) -> str | None:
        if value is not None and value not in SERVICE_LEVELS:
            raise ValueError(f"must be one of: {', '.join(SERVICE_LEVELS)}")
        return value


MAX_BATCH = 1000

Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]


class SupportNoteIn(_In):
    """A support action's body: why (kept in the order's audit log)."""

    note: Note = ""


class MuteIn(SupportNoteIn):
    """POST /v1/support/orders/{order_id}/mute: mute (or, with false, unmute) an order."""

    muted: StrictBool = True


class MarkLostIn(_In):
    """POST /v1/support/shipments/{shipment_id}/lost: a note is required."""

    note: Annotated[Note, StringConstraints(min_length=1)]


class MarkDeliveredIn(MarkLostIn):
    """POST /v1/support/shipments/{shipment_id}/delivered: when (default: now) and why."""

    delivered_at: Timestamp | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)
