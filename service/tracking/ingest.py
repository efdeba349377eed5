"""Turning validated tracking events into stored rows: normalization and the dedupe key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC

import msgspec
import orjson

from service.errors import FieldError
from service.inputs import Location, TrackingEventIn
from service.limits import OutOfRange, check_day, check_instant, json_problems, near, raw_json_suspect
from service.store.events import EventRow
from service.tracking.carrier_codes import normalize_carrier
from service.tracking.numbers import normalized_tracking_number
from service.tracking.taxonomy import normalize_status, status_rank
from service.zones import Resolved

_encode = msgspec.json.Encoder()
_decode_event = msgspec.json.Decoder(TrackingEventIn)
_decode_items = msgspec.json.Decoder(list[msgspec.Raw])


def id_key(carrier: str, tracking_number: str, event_id: str) -> bytes:
    """The dedupe key of an event with an id (the carrier's, or an adapter's identity)."""
    basis = f"id\x1f{carrier}\x1f{tracking_number}\x1f{event_id}"
    return hashlib.sha256(basis.encode()).digest()[:16]


def dedupe_key(event: TrackingEventIn, location_json: bytes) -> bytes:
    """The carrier's event id when it sends one; else a hash of what makes the scan unique.

    The event's tracking number is already normalized (see to_row)."""
    if event.event_id:
        return id_key(event.carrier, event.tracking_number, event.event_id)
    basis = "\x1f".join((
        "scan", event.carrier, event.tracking_number, event.status,
        event.occurred_at.astimezone(UTC).isoformat(), location_json.decode(),
    ))
    return hashlib.sha256(basis.encode()).digest()[:16]


def time_key(when: Resolved, place: Location | None) -> str:
    """What a scan's time contributes to its identity (the dedupe key of a scan its sender
    does not number): the UTC instant when the location pins the zone, else the wall time
    with the normalized location. So the same scan sent once with an offset and once without
    is one scan: both read the same wall time at the same place."""
    if when.certain or when.local is None:
        return "utc:" + when.at.isoformat()
    parts = (place.postal_code, place.city, place.region, place.country) if place else ()
    where = "|".join(" ".join((p or "").lower().replace("-", " ").split()) for p in parts)
    return f"local:{when.local.replace(tzinfo=None).isoformat()}|{where}"


def _field_error(exc: msgspec.ValidationError, prefix: str) -> FieldError:
    message, _, where = str(exc).partition(" - at `")
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    if "timezone" in message:
        message = "timestamp has no timezone; send an offset, e.g. 2026-11-02T14:30:00Z"
    field = ".".join(p for p in (prefix, path) if p) or "body"
    return FieldError(field, message, "invalid")


def _at(prefix: str, name: str) -> str:
    return ".".join(p for p in (prefix, name) if p)


def event_problems(event: TrackingEventIn, prefix: str = "") -> list[FieldError]:
    """What msgspec's constraints cannot say: times the pipeline can compute with."""
    errors = []
    try:
        check_instant(event.occurred_at)
    except OutOfRange as exc:
        errors.append(FieldError(_at(prefix, "occurred_at"), str(exc), "date_range"))
    if event.estimated_delivery is not None:
        try:
            why = near(check_day(event.estimated_delivery), event.occurred_at, "occurred_at")
        except OutOfRange as exc:
            why = str(exc)
        if why:
            errors.append(FieldError(_at(prefix, "estimated_delivery"), why, "date_range"))
    return errors


def parse_event(raw: bytes | msgspec.Raw, prefix: str = ""
                ) -> tuple[TrackingEventIn | None, list[FieldError]]:
    """Decode and check one event from its raw JSON bytes (valid UTF-8: see read_body)."""
    if raw_json_suspect(bytes(raw)):
        # The raw item becomes the stored payload: no field of it may hold a NUL.
        try:
            problems = json_problems(orjson.loads(bytes(raw)), prefix)
        except orjson.JSONDecodeError as exc:
            problems = [FieldError(prefix or "body", f"not valid JSON: {exc}", "malformed")]
        if problems:
            return None, problems
    try:
        event = _decode_event.decode(raw)
    except msgspec.ValidationError as exc:
        return None, [_field_error(exc, prefix)]
    problems = event_problems(event, prefix)
    if problems:
        return None, problems
    return normalized(event), []


def split_items(body: bytes) -> list[msgspec.Raw] | None:
    """The raw items of a JSON array body, or None when the body is not an array."""
    try:
        return _decode_items.decode(body)
    except msgspec.ValidationError:
        return None


def normalized(event: TrackingEventIn) -> TrackingEventIn:
    """The event with our carrier slug (any carrier: known, else `other:<slug>`) and its
    tracking number as matched everywhere (case, spaces and dashes do not matter)."""
    carrier = normalize_carrier(event.carrier)
    number = normalized_tracking_number(event.tracking_number)
    if carrier != event.carrier or number != event.tracking_number:
        event = msgspec.structs.replace(event, carrier=carrier, tracking_number=number)
    return event


def to_row(event: TrackingEventIn, raw: bytes, substatus: str = "",
           time_basis: str = "offset") -> EventRow:
    """The stored row; `substatus` is the sender's finer status when its adapter mapped it,
    `time_basis` how its time was read (service.zones.Resolved.basis)."""
    event = normalized(event)
    mapped = normalize_status(event.carrier, event.status, event.raw_code)
    status = mapped.status
    location = _encode.encode(event.location) if event.location else b""
    return EventRow(
        dedupe_key=dedupe_key(event, location),
        carrier=event.carrier,
        tracking_number=event.tracking_number,
        carrier_event_id=event.event_id,
        status=status,
        substatus=substatus or mapped.substatus or None,
        status_rank=status_rank(status),
        raw_code=mapped.raw_code,
        description=event.description,
        location=location.decode() if location else None,
        occurred_at=event.occurred_at.astimezone(UTC),
        payload=bytes(raw).decode(),
        time_basis=time_basis,
    )


@dataclass
class BatchOutcome:
    """What POST /v1/tracking-events answers."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, list[FieldError]]] = field(default_factory=list)
    unknown_status: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "errors": [
                {"index": index, "errors": [e.as_dict() for e in errors]}
                for index, errors in self.rejected
            ],
        }


def count_new(rows: Sequence[EventRow], accepted_keys: set[bytes]) -> tuple[int, int]:
    """(accepted, duplicates): a key repeated inside the batch counts once as accepted."""
    accepted = len(accepted_keys)
    return accepted, len(rows) - accepted
