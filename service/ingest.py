"""Turning validated tracking events into stored rows: normalization and the dedupe key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC

import orjson

from service.db.events import EventRow
from service.errors import FieldError
from service.models import TrackingEventIn
from service.taxonomy import normalize_status, status_rank


def dedupe_key(event: TrackingEventIn) -> bytes:
    """The carrier's event id when it sends one; else a hash of what makes the scan unique."""
    if event.event_id:
        basis = f"id\x1f{event.carrier}\x1f{event.tracking_number}\x1f{event.event_id}"
    else:
        location = (
            orjson.dumps(event.location.model_dump(exclude_none=True), option=orjson.OPT_SORT_KEYS)
            if event.location else b""
        )
        basis = "\x1f".join((
            "scan", event.carrier, event.tracking_number, event.status,
            event.occurred_at.astimezone(UTC).isoformat(), location.decode(),
        ))
    return hashlib.sha256(basis.encode()).digest()[:16]


def to_row(event: TrackingEventIn, raw: object) -> EventRow:
    status, raw_code = normalize_status(event.carrier, event.status)
    location = event.location.model_dump(exclude_none=True) if event.location else None
    return EventRow(
        dedupe_key=dedupe_key(event),
        carrier=event.carrier,
        tracking_number=event.tracking_number,
        carrier_event_id=event.event_id,
        status=status,
        status_rank=status_rank(status),
        raw_code=event.raw_code or raw_code,
        description=event.description,
        location=orjson.dumps(location).decode() if location else None,
        occurred_at=event.occurred_at.astimezone(UTC),
        payload=orjson.dumps(raw).decode(),
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
