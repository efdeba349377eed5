"""Which moments a shipment's state calls for. Pure functions: no I/O, no clock.

Each moment fires at most once per shipment (ETA revisions once per shown date); that
is enforced by the unique key on `notifications`, so these functions may say the same
thing on every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from service.tracking.taxonomy import TERMINAL

MILESTONES: Final = frozenset({
    "out_for_delivery", "delivered", "delivery_attempted", "available_for_pickup",
    "exception", "returned_to_sender",
})
# A newer milestone replaces a message of these that is still waiting (e.g. overnight).
SUPERSEDABLE: Final = frozenset({"shipped", "predicted_delay", "eta_revised", "stalled"}
                                ) | MILESTONES


@dataclass(frozen=True)
class Moment:
    name: str
    key: str = ""


def milestone_moments(status: str, first_scan_at: datetime | None) -> list[Moment]:
    """The first carrier scan ("shipped") and the current milestone status, if any."""
    moments = []
    # "Shipped" only while nothing newer is known: a parcel whose first scan we learn
    # together with "out for delivery" or "delivered" gets that message alone.
    if first_scan_at is not None and status not in TERMINAL and status not in MILESTONES:
        moments.append(Moment("shipped"))
    if status in MILESTONES:
        moments.append(Moment(status))
    return moments


def delay_moment(
    status: str, eta_date: date | None, promised_date: date | None, today: date, margin_days: int
) -> Moment | None:
    """A predicted delay, told while the promised date has not yet passed."""
    if status in TERMINAL or eta_date is None or promised_date is None:
        return None
    if today > promised_date:
        return None  # too late to warn: "missed promise" covers it
    if (eta_date - promised_date).days > margin_days:
        return Moment("predicted_delay")
    return None


@dataclass(frozen=True)
class Revision:
    """The outcome of comparing a new shown date with what the customer was told."""

    shown_date: date | None
    pending_date: date | None
    moment: Moment | None


# Only news worth an e-mail: the date slipped, or it came at least this much earlier.
EARLIER_WORTH_TELLING = 2


def revise_shown_date(
    shown: date | None, pending: date | None, new: date | None, status: str
) -> Revision:
    """Hysteresis: a new date must be predicted twice in a row before the customer hears of it.

    A prediction flapping between two dates therefore sends nothing, and neither does a
    date drifting a day earlier (the parcel simply arrives early: good news needs no mail).
    """
    if new is None or status in TERMINAL:
        return Revision(shown, None, None)
    if shown is None:
        return Revision(new, None, None)  # the first date shown needs no "revised" message
    if new == shown or 0 < (shown - new).days < EARLIER_WORTH_TELLING:
        return Revision(shown, None, None)
    if pending == new:
        return Revision(new, None, Moment("eta_revised", new.isoformat()))
    return Revision(shown, new, None)


def missed_promise(status: str, promised_date: date | None, today: date) -> Moment | None:
    if status in TERMINAL or promised_date is None or today <= promised_date:
        return None
    return Moment("missed_promise")
