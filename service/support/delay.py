"""Is a shipment late, and why: the same rules the planner tells customers by (predicted
delay, missed promise, stalled), plus what the carrier or the tracker said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from service.eta.reasons import duration
from service.settings import Settings
from service.store.shipments import Shipment, TimelineEvent
from workers.planning.planner import stalled
from workers.planning.triggers import delay_moment, missed_promise

# The main state, most telling first.
STATES = ("delivered", "returned_to_sender", "cancelled", "lost", "past_promise",
          "predicted_late", "carrier_exception", "stalled", "tracker_error", "on_time",
          "no_promise")


@dataclass(frozen=True)
class Why:
    kind: str  # past_promise | predicted_late | stalled | carrier_exception | tracker_error
    text: str
    since: datetime | None = None


@dataclass(frozen=True)
class Delay:
    state: str
    late: bool  # the customer should read a delay notice
    why: tuple[Why, ...]
    promised: date | None
    delivered_late: bool | None = None  # for a delivered parcel: after its promised day?


def _local_day(at: datetime | None, zone: str) -> date | None:
    return at.astimezone(ZoneInfo(zone)).date() if at is not None else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def assess(shipment: Shipment, timeline: list[TimelineEvent], prob_late: float | None,
           zone: str, now: datetime, settings: Settings) -> Delay:
    """The delay state of a shipment now, for the customer's `zone`."""
    promised = shipment.promised_delivery_date
    status = shipment.status
    if status == "delivered":
        day = _local_day(shipment.delivered_at, zone)
        late = None if promised is None or day is None else day > promised
        return Delay("delivered", False, (), promised, late)
    if shipment.finished:
        return Delay(status, False, (), promised)
    if shipment.lost:
        return Delay("lost", False, (), promised)
    today = now.astimezone(ZoneInfo(zone)).date()
    why: list[Why] = []
    if missed_promise(status, promised, today) is not None and promised is not None:
        days = (today - promised).days
        why.append(Why("past_promise", f"Promised for {promised.isoformat()}; still not "
                                       f"delivered {_plural(days, 'day')} later."))
    eta_day = _local_day(getattr(shipment, f"eta_{settings.delay_quantile}"), zone)
    if (delay_moment(status, eta_day, promised, today, settings.delay_margin_days) is not None
            and eta_day is not None and promised is not None):
        chance = "" if prob_late is None else f" (chance of missing it: {prob_late:.0%})"
        why.append(Why("predicted_late", f"Likely arrival {eta_day.isoformat()} is after the "
                                          f"promised {promised.isoformat()}{chance}."))
    if status == "exception":
        said = next((e for e in reversed(timeline) if e.status == "exception"), None)
        what = (said.description or said.raw_code or "no details") if said else "no details"
        why.append(Why("carrier_exception", f"The carrier reported a problem: {what}.",
                       said.occurred_at if said else shipment.status_occurred_at))
    if stalled(shipment, now, zone, settings) is not None:
        since = shipment.last_event_at if shipment.first_scan_at else shipment.label_created_at
        quiet = duration((now - since).total_seconds() / 3600) if since else "a while"
        what = "carrier scan" if shipment.first_scan_at else "scan since the label was created"
        why.append(Why("stalled", f"No {what} for {quiet}.", since))
    newest = max(timeline, key=lambda e: (e.occurred_at, e.id), default=None)
    if newest is not None and newest.status == "unknown":
        why.append(Why("tracker_error", "The latest update carries a code we cannot read: "
                                        f"{newest.raw_code or '?'} "
                                        f"({newest.description or 'no description'}).",
                       newest.occurred_at))
    if why:
        state = why[0].kind
    else:
        state = "on_time" if promised is not None else "no_promise"
    late = any(w.kind in ("past_promise", "predicted_late") for w in why)
    return Delay(state, late, tuple(why), promised)
