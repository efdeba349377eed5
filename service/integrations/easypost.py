"""EasyPost tracker webhooks: an Event whose `result` is a Tracker.

Maps: every TrackingDetail (status, status_detail, message, datetime, tracking_location,
carrier_code) to a tracking event; the tracker's est_delivery_date (or its carrier_detail's
est_delivery_date_local, which is already the carrier's local date) to the carrier estimate.
Drops from structured data (kept in the delivery's raw body and each event's payload):
signed_by, weight, fees, public_url, carrier_detail's other fields, detail `source`.
Other Event descriptions (batch.*, shipment.*, refund.*...) are acknowledged and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
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
from service.limits import OutOfRange, check_instant
from service.store.events import EventRow
from service.tracking.carrier_codes import (
    EASYPOST_ERROR_DETAILS,
    EASYPOST_TRACKER_STATES,
    Mapped,
    from_easypost,
)
from service.tracking.ingest import time_key
from service.tracking.numbers import normalized_tracking_number
from service.zones import Resolved, resolve

TRACKER_EVENTS = frozenset({"tracker.created", "tracker.updated"})
TrackingCode = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^\s*[A-Za-z0-9._:\-]+\s*$")]


class TrackingLocation(Shape):
    city: str | None = None
    state: str | None = None
    country: str | None = None
    zip: str | None = None


class TrackingDetail(Shape):
    status: str | None = None
    status_detail: str | None = None
    message: str | None = None
    description: str | None = None
    datetime: Annotated[str, Field(min_length=10)]
    carrier_code: str | None = None
    tracking_location: TrackingLocation | None = None


class CarrierDetail(Shape):
    est_delivery_date_local: str | None = None


class Tracker(Shape):
    id: str | None = None
    tracking_code: TrackingCode
    carrier: str | None = None
    status: str | None = None
    status_detail: str | None = None
    est_delivery_date: str | None = None
    updated_at: str | None = None
    carrier_detail: CarrierDetail | None = None
    tracking_details: list[TrackingDetail] = []


class Event(Shape):
    id: str | None = None
    description: str
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrackerUpdate:
    """A validated tracker: needs the origin zone only if some scan time has no offset."""

    event_id: str | None
    tracker: Tracker
    carrier: str
    details: list[dict[str, Any]]  # the sender's own objects, stored as event payloads
    notes: tuple[str, ...] = ()

    @property
    def tracking_number(self) -> str:
        return normalized_tracking_number(self.tracker.tracking_code)

    def batch(self, origin_zone: str | None) -> WebhookBatch:
        """The tracker's scans and estimate; a scan that cannot be used is left out and
        named in the notes, so one bad detail never refuses the others."""
        rows, notes = [], list(self.notes)
        errors: list[TrackingDetail] = []
        for i, (detail, raw) in enumerate(zip(self.tracker.tracking_details, self.details,
                                              strict=True)):
            if _tracker_error(detail):
                # EasyPost's own error ("invalid tracking number"): the tracker's state.
                errors.append(detail)
                notes.append(f"result.tracking_details.{i}: EasyPost {detail.status!r} kept as "
                             "the tracker's state, not as a parcel event")
                continue
            try:
                rows.append(self._row(i, detail, raw, origin_zone))
            except MappingError as exc:
                notes.extend(skipped(exc))
        estimate = self._estimate(notes)
        return WebhookBatch(events=rows, estimates=[estimate] if estimate else [], notes=notes,
                            trackers=[self._state(errors)])

    def _state(self, errors: list[TrackingDetail]) -> TrackerState:
        """The tracker's own state, kept for the operator (error, failure, unknown, or the
        parcel status EasyPost summarizes)."""
        t = self.tracker
        last = errors[-1] if errors else None
        state = t.status or (last.status if last else None) or "unknown"
        if last is not None and state not in EASYPOST_TRACKER_STATES:
            state = last.status or "error"
        message = (last.message or last.description) if last else None
        if message is None and state in EASYPOST_TRACKER_STATES and t.tracking_details:
            final = t.tracking_details[-1]
            message = final.message or final.description
        return TrackerState(self.carrier, self.tracking_number, "easypost", state[:40],
                            (t.status_detail or (last.status_detail if last else None) or None),
                            message[:500] if message else None, _instant(t.updated_at))

    def _row(self, index: int, detail: TrackingDetail, raw: dict[str, Any],
             origin_zone: str | None) -> EventRow:
        where = f"result.tracking_details.{index}"
        try:
            when, where_at = detail_time(detail, origin_zone)
        except OutOfRange as exc:
            raise MappingError([FieldError(f"{where}.datetime", str(exc), "date_range")]
                               ) from None
        except ValueError:
            raise MappingError([FieldError(f"{where}.datetime", "must be an ISO 8601 date-time",
                                           "datetime_parsing")]) from None
        mapped = self._status(detail)
        payload: dict[str, Any] = {"source": "easypost", "tracker_id": self.tracker.id,
                                   "detail": raw}
        if when.inferred:
            payload["time"] = when.note()
        return event_row(
            where, payload, mapped, when.basis,
            carrier=self.carrier, tracking_number=self.tracking_number,
            occurred_at=when.at, description=detail.message,
            location=where_at, event_id=detail_id(detail, when, where_at),
        )

    def _status(self, detail: TrackingDetail) -> Mapped:
        """Our status and the raw code we keep: EasyPost's words, else the carrier's code."""
        return from_easypost(self.carrier, detail.status, detail.status_detail,
                             detail.carrier_code)

    def _estimate(self, notes: list[str]) -> CarrierEstimate | None:
        local = self.tracker.carrier_detail.est_delivery_date_local \
            if self.tracker.carrier_detail else None
        as_of = _instant(self.tracker.updated_at)
        for value, source in ((local, "easypost:est_delivery_date_local"),
                              (self.tracker.est_delivery_date, "easypost:est_delivery_date")):
            if value:
                try:
                    # The date as the carrier states it: converting to UTC could move the day.
                    day = date.fromisoformat(value[:10])
                except ValueError:
                    continue
                why = estimate_problem(day, as_of)
                if why:
                    notes.append(f"{source.partition(':')[2]}: {why}; not stored")
                    continue
                return CarrierEstimate(self.carrier, self.tracking_number, day, source, as_of)
        return None


def _tracker_error(detail: TrackingDetail) -> bool:
    """EasyPost's own error rather than a carrier scan: status `error`, or a `failure` that
    says the tracking number is invalid (as in test mode)."""
    text = (detail.message or detail.description or "").lower()
    return detail.status in EASYPOST_ERROR_DETAILS or (
        detail.status == "failure" and detail.status_detail in (None, "unknown")
        and "invalid" in text)


def detail_time(detail: TrackingDetail, origin_zone: str | None
                ) -> tuple[Resolved, Location | None]:
    """The detail's instant (ValueError/OutOfRange when unusable) and our Location of it."""
    place = detail.tracking_location or TrackingLocation()
    when = resolve(detail.datetime, place.zip, place.country, place.state, place.city,
                   origin_zone)
    return when, location(place.city, place.state, place.zip, place.country)


def detail_id(detail: TrackingDetail, when: Resolved, where_at: Location | None) -> str:
    """A detail's identity: details have no id, and the tracker resends its whole history on
    every update. The time by its key (offset or not, the same scan); a null or "" carrier
    code alike."""
    return event_id("easypost", time_key(when, where_at), detail.status, detail.status_detail,
                    detail.message, (detail.carrier_code or "").strip() or None)


def _instant(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if value else None
        return check_instant(parsed) if parsed and parsed.tzinfo else None
    except ValueError:  # incl. OutOfRange: a time we cannot compare with is no time
        return None


def parse(payload: Any) -> TrackerUpdate | str:
    """A TrackerUpdate, or the description of an Event we acknowledge without storing."""
    event = validate_shape(Event, payload)
    if event.description not in TRACKER_EVENTS:
        return event.description
    if event.result is None:
        raise MappingError([FieldError("result", "a tracker event needs its Tracker", "missing")])
    tracker = validate_shape(Tracker, event.result, "result")
    notes: list[str] = []
    carrier = known_carrier(tracker.carrier, "result.carrier", notes)
    details = event.result.get("tracking_details") or []
    return TrackerUpdate(event.id, tracker, carrier, list(details), tuple(notes))
