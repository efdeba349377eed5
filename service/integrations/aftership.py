"""AfterShip tracking webhooks: {"event", "event_id", "msg": Tracking, "ts"}.

Maps: each checkpoint (checkpoint_time, tag/subtag/subtag_message, message, location, city,
state, zip, country_iso3, raw_tag; the 2024+ names postal_code and country_region too) to a
tracking event, and the estimated delivery to the
carrier estimate, preferring the courier's own date over AfterShip's prediction:
courier_estimated_delivery_date > expected_delivery > latest_estimated_delivery >
aftership_estimated_delivery_date (its `source` says which it was). Drops from structured
data (kept in the raw body and each event's payload): coordinates, country_name, title,
customer fields, emails/smses, custom_fields, on_time_status, shipment weight/package count.

checkpoint_time is documented as an empty string, a date, a local date-time or one with an
offset. A checkpoint without a time cannot be placed on the timeline: it is skipped (kept in
the raw body, named in the delivery's notes) rather than refusing the whole delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import Field

from service.errors import FieldError
from service.inputs import Location
from service.integrations import (
    CarrierEstimate,
    MappingError,
    Shape,
    TrackerState,
    WebhookBatch,
    estimate_problem,
    event_id,
    event_row,
    known_carrier,
    location,
    skipped,
    validate_shape,
)
from service.limits import OutOfRange
from service.store.events import EventRow
from service.tracking.carrier_codes import (
    AFTERSHIP_ERROR_TAGS,
    AFTERSHIP_TRACKER_STATES,
    Mapped,
    from_aftership,
)
from service.tracking.ingest import time_key
from service.tracking.numbers import normalized_tracking_number
from service.zones import Resolved, country_code, resolve

TRACKING_EVENTS = frozenset({"tracking_update", "edd_revise"})
TrackingNumber = Annotated[str, Field(min_length=1, max_length=100,
                                      pattern=r"^\s*[A-Za-z0-9._:\-]+\s*$")]
# Where the estimate may be, best first, and how to read each.
ESTIMATE_FIELDS = ("courier_estimated_delivery_date", "expected_delivery",
                   "latest_estimated_delivery", "aftership_estimated_delivery_date")


class Checkpoint(Shape):
    checkpoint_time: str | None = None
    tag: str | None = None
    subtag: str | None = None
    subtag_message: str | None = None
    message: str | None = None
    location: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country_iso3: str | None = None
    postal_code: str | None = None  # 2024+ name of zip
    country_region: str | None = None  # 2024+ name of country_iso3
    raw_tag: str | None = None
    slug: str | None = None

    @property
    def postcode(self) -> str | None:
        return self.zip or self.postal_code

    @property
    def country(self) -> str | None:
        return self.country_iso3 or self.country_region


class Tracking(Shape):
    id: str | None = None
    tracking_number: TrackingNumber
    slug: str | None = None
    tag: str | None = None
    subtag: str | None = None
    subtag_message: str | None = None
    origin_country_iso3: str | None = None
    updated_at: str | None = None
    checkpoints: list[Checkpoint] = []


class Envelope(Shape):
    event: str | None = None
    event_id: str | None = None
    ts: Annotated[int, Field(ge=0, le=4_102_444_800)] | None = None  # before 2100
    msg: dict[str, Any]


@dataclass(frozen=True)
class TrackingUpdate:
    event_id: str | None
    tracking: Tracking
    carrier: str
    raw: dict[str, Any]  # msg, as sent
    as_of: datetime | None = None  # the envelope's ts: when AfterShip sent this state
    notes: tuple[str, ...] = ()

    @property
    def tracking_number(self) -> str:
        return normalized_tracking_number(self.tracking.tracking_number)

    def batch(self, origin_zone: str | None) -> WebhookBatch:
        raws = self.raw.get("checkpoints") or []
        rows, notes = [], list(self.notes)
        for i, (cp, raw) in enumerate(zip(self.tracking.checkpoints, raws, strict=True)):
            if not (cp.checkpoint_time or "").strip():
                notes.append(f"msg.checkpoints.{i}: no checkpoint_time; not stored as an event")
                continue
            if cp.tag in AFTERSHIP_ERROR_TAGS:
                notes.append(f"msg.checkpoints.{i}: AfterShip {cp.tag!r} kept as the tracker's "
                             "state, not as a parcel event")
                continue
            try:
                rows.append(self._row(i, cp, raw, origin_zone))
            except MappingError as exc:  # one bad checkpoint never refuses the others
                notes.extend(skipped(exc))
        estimate = self._estimate(notes)
        return WebhookBatch(events=rows, estimates=[estimate] if estimate else [], notes=notes,
                            trackers=[self._state()])

    def _state(self) -> TrackerState:
        """The tracking's own tag, kept for the operator: Expired, Pending and InfoReceived
        (no checkpoints yet) say something about the tracker, not a parcel exception."""
        t = self.tracking
        state = t.tag or ("Pending" if not t.checkpoints else "unknown")
        message = t.subtag_message
        if message is None and state in AFTERSHIP_TRACKER_STATES and t.checkpoints:
            message = t.checkpoints[-1].message
        return TrackerState(self.carrier, self.tracking_number, "aftership", state[:40],
                            t.subtag, message[:500] if message else None, self.as_of)

    def _row(self, index: int, cp: Checkpoint, raw: dict[str, Any], origin_zone: str | None
             ) -> EventRow:
        where = f"msg.checkpoints.{index}"
        try:
            when, where_at = checkpoint_time(cp, origin_zone)
        except OutOfRange as exc:
            raise MappingError([FieldError(f"{where}.checkpoint_time", str(exc), "date_range")]
                               ) from None
        except ValueError:
            raise MappingError([FieldError(f"{where}.checkpoint_time",
                                           "must be an ISO 8601 date or date-time",
                                           "datetime_parsing")]) from None
        mapped = self._status(cp)
        payload: dict[str, Any] = {"source": "aftership", "tracking_id": self.tracking.id,
                                   "checkpoint": raw}
        if when.inferred:
            payload["time"] = when.note()
        return event_row(
            where, payload, mapped, when.basis,
            carrier=self.carrier, tracking_number=self.tracking_number, occurred_at=when.at,
            description=cp.message or cp.subtag_message, location=where_at,
            event_id=checkpoint_id(cp, when, where_at),
        )

    def _status(self, cp: Checkpoint) -> Mapped:
        """Our status and the raw code kept: the subtag (it names its tag), else the raw tag."""
        return from_aftership(self.carrier, cp.tag, cp.subtag, cp.raw_tag)

    def _estimate(self, notes: list[str]) -> CarrierEstimate | None:
        for name in ESTIMATE_FIELDS:
            day, source = _estimate_date(self.raw.get(name))
            why = estimate_problem(day, self.as_of) if day else None
            if why:
                notes.append(f"msg.{name}: {why}; not stored")
                continue
            if day:
                label = f"aftership:{name}" + (f":{source}" if source else "")
                return CarrierEstimate(self.carrier, self.tracking_number, day, label[:100],
                                       self.as_of)
        return None


def checkpoint_time(cp: Checkpoint, origin_zone: str | None
                    ) -> tuple[Resolved, Location | None]:
    """The checkpoint's instant (ValueError/OutOfRange when unusable) and our Location of it."""
    when = resolve(cp.checkpoint_time or "", cp.postcode, cp.country, cp.state, cp.city,
                   origin_zone)
    return when, location(cp.city, cp.state, cp.postcode, country_code(cp.country))


def checkpoint_id(cp: Checkpoint, when: Resolved, where_at: Location | None) -> str:
    """A checkpoint's identity, its time by its key: the same checkpoint with and without an
    offset is one."""
    return event_id("aftership", time_key(when, where_at), cp.tag, cp.subtag, cp.message,
                    cp.location, (cp.raw_tag or "").strip() or None)


def _estimate_date(value: Any) -> tuple[date | None, str | None]:
    """A date from a plain date/date-time string or AfterShip's EDD objects."""
    source = None
    if isinstance(value, dict):
        source = value.get("source") if isinstance(value.get("source"), str) else None
        value = (value.get("estimated_delivery_date") or value.get("date")
                 or value.get("datetime") or value.get("estimated_delivery_date_max")
                 or value.get("datetime_max"))
    if not isinstance(value, str) or len(value) < 10:
        return None, None
    try:
        # The date as stated: it is a calendar day at the destination, not an instant.
        return date.fromisoformat(value[:10]), source
    except ValueError:
        return None, None


def parse(payload: Any) -> TrackingUpdate | str:
    """A TrackingUpdate, or the event name of a message we acknowledge without storing."""
    envelope = validate_shape(Envelope, payload)
    if envelope.event is not None and envelope.event not in TRACKING_EVENTS:
        return envelope.event
    tracking = validate_shape(Tracking, envelope.msg, "msg")
    notes: list[str] = []
    carrier = known_carrier(tracking.slug, "msg.slug", notes)
    as_of = datetime.fromtimestamp(envelope.ts, UTC) if envelope.ts else None
    return TrackingUpdate(envelope.event_id, tracking, carrier, envelope.msg, as_of,
                          tuple(notes))
