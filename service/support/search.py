"""What an agent typed, as search criteria: e-mail, phone, name, ids, tracking number."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import phonenumbers

from service.errors import FieldError
from service.store.search import Criteria
from service.tracking.numbers import normalized_tracking_number

MIN_NAME_PREFIX = 2
MAX_TEXT = 200


def e164(text: str, region: str) -> str | None:
    """A phone number as typed ("(415) 555-2671", "+49 30 1234567") in E.164, reading it
    as a number of `region` (the shop's country) when it has no +country code."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _clean(field: str, text: str, errors: list[FieldError]) -> str | None:
    value = " ".join(text.split())
    if not value:
        errors.append(FieldError(field, "must not be empty", "missing"))
        return None
    if len(value) > MAX_TEXT or "\x00" in value:
        errors.append(FieldError(field, f"must be at most {MAX_TEXT} characters of text",
                                 "invalid"))
        return None
    return value


def criteria_from(params: dict[str, str], region: str) -> tuple[Criteria, list[FieldError]]:
    """Explicit criteria (all must match): order_id, shipment_id, tracking_number, email,
    phone, name (a prefix of the customer's name)."""
    errors: list[FieldError] = []
    values: dict[str, str] = {}
    for field in ("order_id", "shipment_id", "tracking_number", "email", "phone", "name"):
        if field not in params:
            continue
        value = _clean(field, params[field], errors)
        if value is None:
            continue
        if field == "tracking_number":
            values[field] = normalized_tracking_number(value)
        elif field == "email":
            values[field] = value.lower()
        elif field == "phone":
            number = e164(value, region)
            if number is None:
                errors.append(FieldError("phone", "not a phone number", "invalid"))
            else:
                values[field] = number
        elif field == "name":
            if len(value) < MIN_NAME_PREFIX:
                errors.append(FieldError("name", f"give at least {MIN_NAME_PREFIX} letters",
                                         "too_short"))
            else:
                values["name_prefix"] = value.lower()
        else:
            values[field] = value
    return Criteria(**values), errors


def criteria_for_text(text: str, region: str) -> Criteria:
    """Free text from the search box, read every way it can be (any may match): an e-mail;
    else an order id, shipment id or tracking number, a phone number when it reads as one,
    and a name prefix."""
    value = " ".join(text.split())[:MAX_TEXT]
    if "@" in value:
        return Criteria(email=value.lower())
    phone = e164(value, region) if sum(c.isdigit() for c in value) >= 6 else None
    return Criteria(
        order_id=value, shipment_id=value,
        tracking_number=normalized_tracking_number(value) or None, phone=phone,
        name_prefix=value.lower() if len(value) >= MIN_NAME_PREFIX else None)


def encode_cursor(after: tuple[datetime, str]) -> str:
    raw = f"{after[0].isoformat()}|{after[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The keyset in a cursor, or None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, shipment_id = raw.partition("|")
        at = datetime.fromisoformat(when)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if at.tzinfo is None or not shipment_id:
        return None
    return at, shipment_id
