"""The reasons behind an ETA in words a support agent can read out.

Each reason is a factor, the shipment's own value of it when it was predicted, and what it
did to the estimate: "Time since the last carrier scan (8 days): adds about 12 h". Stating the
fact beside the effect never reads oddly, whichever way the model weighed it (the sentences
the predictor builds by the sign alone said "A recent scan lately" for a parcel last scanned
eight days ago, and "The promised date is close" ten days after it passed).

The predictor gives each reason as data (:class:`predictor.model.Reason`: the feature, the
hours it adds, the row's values); the words are here. A stored reason is {"feature",
"reason" (:func:`describe`'s sentence), "hours"}; for ETAs stored before the feature was
kept, `feature_of` recognises which feature a sentence came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from predictor.features import FEATURES
from predictor.model import Reason
from service.store.shipments import Shipment, TimelineEvent
from service.tracking.carrier_codes import carrier_name as display_carrier
from service.tracking.taxonomy import NOT_CARRIER_SCANS
from service.zones import customer_zone

NEGLIGIBLE_HOURS = 0.5
_CARRIER_NAMES = {"ups": "UPS", "usps": "USPS", "fedex": "FedEx", "dhl": "DHL",
                  "ontrac": "OnTrac", "unknown": "the carrier"}


def describe(feature: str, hours: float, row: Mapping[str, Any]) -> str:
    """One reason (a feature's contribution, see :class:`predictor.model.Reason`) as the
    short sentence stored with the ETA and shown by the API."""
    return _describe(feature, hours > 0, math.isnan(hours),
                     str(row.get("carrier", "unknown")),
                     str(row.get("service_level", "unknown")),
                     str(row.get("destination_state", "unknown")),
                     str(row.get("latest_status", "unknown")))


@lru_cache(maxsize=8192)
def _describe(feature: str, slower: bool, unknown_hours: bool, carrier_code: str,
              service: str, state: str, latest_status: str) -> str:
    """:func:`describe` from the only values its words depend on (a batch repeats them)."""
    carrier = _CARRIER_NAMES.get(carrier_code, carrier_code)
    product = carrier if service == "unknown" else f"{carrier} {service.title()}"
    where = "this destination" if state == "unknown" else state
    status = latest_status.replace("_", " ")
    more, less = ("adds time", "saves time")
    texts: dict[str, str] = {
        "carrier": f"{product} {'runs slower' if slower else 'runs faster'} than average",
        "service_level": f"the {service} service is {'slower' if slower else 'faster'}",
        "lane": f"{product} {'runs slower' if slower else 'runs faster'} on this lane",
        "destination_state": f"deliveries to {where} {more if slower else less}",
        "latest_status": f"latest scan '{status}' {'means more' if slower else 'means less'}"
                         " time to go",
        "distance_km": f"{'a long' if slower else 'a short'} distance to travel",
        "promised_lead_bdays": f"the carrier's standard for this route is "
                               f"{'long' if slower else 'short'}",
        "promise_remaining_bdays": f"{'several' if slower else 'few'} business days left "
                                   "before the promised date",
        "hours_to_promise": f"the promised date is {'still far' if slower else 'close'}",
        "weekday": f"the day of the week {more if slower else less} (no Sunday deliveries)",
        "local_hour": f"the time of day {more if slower else less}",
        "holidays_next_7d": f"a public holiday this week {more if slower else less}",
        "peak_season": f"peak season {'slows the networks' if slower else 'is not a factor'}",
        "days_into_peak": f"{'deep into' if slower else 'early in'} the holiday peak",
        "hours_since_label": f"time since the label was created {more if slower else less}",
        "hours_since_handover": f"time already in transit {more if slower else less}",
        "bdays_since_handover": f"business days already in transit "
                                f"{more if slower else less}",
        "n_scans": f"{'few' if slower else 'many'} scans so far",
        "hours_since_last_scan": f"{'no' if slower else 'a recent'} scan lately",
        "lane_transit_median_7d": f"{product} deliveries on this lane were "
                                  f"{'slow' if slower else 'fast'} this week",
        "lane_transit_median_14d": f"{product} deliveries on this lane were "
                                   f"{'slow' if slower else 'fast'} in the last two weeks",
        "lane_deliveries_14d": f"{'little' if slower else 'plenty of'} recent history on "
                               "this lane",
        "carrier_transit_median_7d": f"{product} has been {'slow' if slower else 'fast'} "
                                     "this week",
        "carrier_transit_median_14d": f"{product} has been {'slow' if slower else 'fast'} "
                                      "in the last two weeks",
        "state_transit_median_7d": f"deliveries to {where} were "
                                   f"{'slow' if slower else 'fast'} this week",
        "carrier_backlog_days": f"{product} has {'a pile-up of' if slower else 'few'} "
                                "parcels in its network right now",
        "lane_backlog_days": f"{'many' if slower else 'few'} parcels are stuck on this lane "
                             "right now",
        "carrier_estimate_hours": f"{carrier}'s own delivery estimate is "
                                  f"{'still some way off' if slower else 'close'}",
    }
    text = texts.get(feature, f"{feature.replace('_', ' ')} {more if slower else less}")
    if unknown_hours:
        return text
    return text[0].upper() + text[1:]


def stored_reasons(reasons: Sequence[Reason]) -> list[dict[str, Any]]:
    """A prediction's reasons as stored with its ETA (and shown by the API): each
    :func:`describe`'s sentence (a row's reasons share its values: read them once)."""
    out = []
    context: Mapping[str, Any] | None = None
    values: tuple[str, str, str, str] = ("", "", "", "")
    for r in reasons:
        if r.context is not context:
            context = r.context
            values = (str(context.get("carrier", "unknown")),
                      str(context.get("service_level", "unknown")),
                      str(context.get("destination_state", "unknown")),
                      str(context.get("latest_status", "unknown")))
        out.append({"feature": r.feature,
                    "reason": _describe(r.feature, r.hours > 0, math.isnan(r.hours), *values),
                    "hours": r.hours})
    return out


@dataclass(frozen=True)
class ReasonFacts:
    """What was known about a shipment when an ETA was predicted (`as_of`)."""

    as_of: datetime
    zone: str  # the destination's zone: where the promise is kept
    carrier_name: str
    service_level: str
    destination: str | None
    latest_status: str | None
    scans: int
    last_scan_at: datetime | None
    handover_at: datetime | None
    label_at: datetime | None
    promised: date | None
    carrier_estimate: date | None


def facts_at(as_of: datetime, zone: str, carrier_name: str, service_level: str,
             destination: str | None, label_at: datetime | None, promised: date | None,
             carrier_estimate: date | None, scans: Sequence[tuple[str, datetime]]
             ) -> ReasonFacts:
    """The facts from a shipment's (status, occurred_at) scans known at `as_of`."""
    seen = sorted((at, status) for status, at in scans if at <= as_of)
    carrier = [(at, status) for at, status in seen if status not in NOT_CARRIER_SCANS]
    known = [(at, status) for at, status in seen if status != "unknown"]
    return ReasonFacts(
        as_of=as_of, zone=zone, carrier_name=carrier_name, service_level=service_level,
        destination=destination, latest_status=known[-1][1] if known else None,
        scans=len(carrier), last_scan_at=carrier[-1][0] if carrier else None,
        handover_at=carrier[0][0] if carrier else None, label_at=label_at, promised=promised,
        carrier_estimate=carrier_estimate)


def facts_for(shipment: Shipment, timeline: Sequence[TimelineEvent], as_of: datetime,
              default_zone: str) -> ReasonFacts:
    """What was known about a stored shipment at `as_of` (scans received by then)."""
    known = [(e.status, e.occurred_at) for e in timeline if e.received_at <= as_of]
    destination = " ".join(p for p in (shipment.destination_postal_code,
                                       shipment.destination_country) if p) or None
    zone = customer_zone(None, shipment.destination_postal_code, shipment.destination_country,
                         default_zone)  # the destination's: where a promise is kept
    return facts_at(as_of, zone, display_carrier(shipment.carrier),
                    shipment.service_level, destination, shipment.label_created_at,
                    shipment.promised_delivery_date, shipment.carrier_estimated_delivery, known)


def duration(hours: float) -> str:
    """4.0 -> "4 h", 30 -> "30 h", 192 -> "8 days", 60 -> "2.5 days"."""
    hours = abs(hours)
    if hours < 10:
        return f"{hours:.1f}".removesuffix(".0") + " h"
    if hours < 48:
        return f"{hours:.0f} h"
    days = hours / 24
    text = f"{days:.0f}" if days >= 10 or abs(days - round(days)) < 0.05 else f"{days:.1f}"
    return f"{text} days"


def effect(hours: float) -> str:
    if abs(hours) < NEGLIGIBLE_HOURS:
        return "hardly changes it"
    return f"adds about {duration(hours)}" if hours > 0 else f"takes about {duration(hours)} off"


def _ago(facts: ReasonFacts, at: datetime | None, none: str) -> str:
    if at is None:
        return none
    return f"{duration((facts.as_of - at).total_seconds() / 3600)}"


def _promise(facts: ReasonFacts) -> str:
    if facts.promised is None:
        return "no promised date"
    today = facts.as_of.astimezone(ZoneInfo(facts.zone)).date()
    days = (facts.promised - today).days
    when = facts.promised.isoformat()
    if days < 0:
        return f"promised {when}, {-days} day{'s' if days != -1 else ''} ago"
    if days == 0:
        return f"promised {when}, today"
    return f"promised {when}, in {days} day{'s' if days != 1 else ''}"


def _local(facts: ReasonFacts) -> datetime:
    return facts.as_of.astimezone(ZoneInfo(facts.zone))


def _status(facts: ReasonFacts) -> str:
    return (facts.latest_status or "no scan yet").replace("_", " ")


Fact = Callable[[ReasonFacts], str]
# feature -> (what the factor is, the shipment's value of it or None when we only know
# the model's view of it, e.g. a lane's recent medians).
FACTORS: dict[str, tuple[str, Fact | None]] = {
    "carrier": ("Carrier", lambda f: f.carrier_name),
    "service_level": ("Service level", lambda f: f.service_level),
    "lane": ("Carrier on this route", lambda f: f"{f.carrier_name} to {f.destination or '?'}"),
    "destination_state": ("Destination", lambda f: f.destination or "unknown"),
    "latest_status": ("Latest scan", _status),
    "distance_km": ("Distance to travel", None),
    "promised_lead_bdays": ("Business days the shop promised", _promise),
    "promise_remaining_bdays": ("Business days left before the promise", _promise),
    "hours_to_promise": ("Time left to the promised date", _promise),
    "weekday": ("Day of the week", lambda f: _local(f).strftime("%A")),
    "local_hour": ("Time of day", lambda f: _local(f).strftime("%H:%M")),
    "holidays_next_7d": ("Public holidays in the next 7 days", None),
    "peak_season": ("Peak season", None),
    "days_into_peak": ("How far into the holiday peak", None),
    "hours_since_label": ("Time since the label was created",
                          lambda f: _ago(f, f.label_at, "no label time")),
    "hours_since_handover": ("Time in transit",
                             lambda f: _ago(f, f.handover_at, "not handed over yet")),
    "bdays_since_handover": ("Business days in transit",
                             lambda f: _ago(f, f.handover_at, "not handed over yet")),
    "n_scans": ("Carrier scans so far", lambda f: str(f.scans)),
    "hours_since_last_scan": ("Time since the last carrier scan",
                              lambda f: _ago(f, f.last_scan_at, "no carrier scan yet")),
    "lane_transit_median_7d": ("Recent deliveries on this route (7 days)", None),
    "lane_transit_median_14d": ("Recent deliveries on this route (14 days)", None),
    "lane_deliveries_14d": ("History on this route (14 days)", None),
    "carrier_transit_median_7d": ("The carrier's recent speed (7 days)", None),
    "carrier_transit_median_14d": ("The carrier's recent speed (14 days)", None),
    "state_transit_median_7d": ("Recent deliveries to this destination (7 days)", None),
    "carrier_backlog_days": ("Parcels piling up in the carrier's network", None),
    "lane_backlog_days": ("Parcels piling up on this route", None),
    "carrier_estimate_hours": ("The carrier's own estimate",
                               lambda f: f.carrier_estimate.isoformat() if f.carrier_estimate
                               else "none given"),
}


def agent_reason(feature: str | None, hours: float, stored_text: str, facts: ReasonFacts
                 ) -> str:
    """One reason for an agent: "<factor> (<value>): <effect on the estimate>"."""
    if feature is None or feature not in FACTORS:
        return f"{stored_text} ({effect(hours)})"
    label, fact = FACTORS[feature]
    value = f" ({fact(facts)})" if fact is not None else ""
    return f"{label}{value}: {effect(hours)}"


def agent_reasons(stored: Sequence[Mapping[str, Any]], facts: ReasonFacts
                  ) -> list[dict[str, Any]]:
    """Stored reasons ({"reason", "hours"} and, once the predictor gives it, "feature") as
    {"feature", "hours", "text"} for agents."""
    out = []
    for reason in stored:
        hours = float(reason.get("hours") or 0.0)
        text = str(reason.get("reason", ""))
        feature = reason.get("feature") or feature_of(text)
        out.append({"feature": feature, "hours": hours,
                    "text": agent_reason(feature, hours, text, facts)})
    return out


# Values no real row has: where the predictor's sentence mentions the row, the pattern
# accepts anything.
_SENTINELS = {"carrier": "zqcarrierzq", "service_level": "zqservicezq",
              "destination_state": "zqstatezq", "latest_status": "zqstatuszq"}
_ANY = re.compile("|".join(["zqcarrierzq zqservicezq", *_SENTINELS.values()]), re.IGNORECASE)


@cache
def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for feature in FEATURES:
        for sign in (1.0, -1.0):
            text = describe(feature, sign, _SENTINELS)
            parts = _ANY.split(text)
            patterns.append((feature, re.compile(
                ".+?".join(re.escape(p) for p in parts), re.IGNORECASE)))
    return patterns


def feature_of(text: str) -> str | None:
    """The feature a stored reason's sentence was built for (None when none matches)."""
    for feature, pattern in _patterns():
        if pattern.fullmatch(text):
            return feature
    return None
