"""The tracking page as the customer reads it: every text in their language, every date in
their zone and their locale's patterns, nothing beyond city-level places."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.pages.catalogue import Strings
from service.pages.dates import PageDates
from service.store.orders import Order
from service.store.shipments import Shipment, TimelineEvent
from service.support.delay import Delay
from service.tracking.carrier_codes import carrier_name as display_carrier

MAX_SCANS = 25
# The milestones a parcel passes; the fourth is "ready for pickup" for a parcel waiting at a
# pickup point.
STEPS = ("ordered", "label", "in_transit", "out_for_delivery", "delivered")
_STEP_OF = {"label_created": 1, "in_transit": 2, "exception": 2, "delivery_attempted": 2,
            "unknown": 2, "out_for_delivery": 3, "available_for_pickup": 3, "delivered": 4}


@dataclass(frozen=True)
class Step:
    label: str
    state: str  # done | current | todo


@dataclass(frozen=True)
class Scan:
    text: str
    place: str | None
    when: str
    at: str  # ISO 8601, for <time datetime>


@dataclass(frozen=True)
class OtherShipment:
    label: str
    status: str
    url: str
    current: bool


@dataclass(frozen=True)
class Notice:
    title: str
    text: str


@dataclass(frozen=True)
class TrackingPage:
    title: str
    order_line: str
    headline: str
    detail: str | None
    carrier_line: str
    delivered: str | None
    eta_window: str | None
    eta_likely: str | None
    promised: str | None
    late: Notice | None
    lost: Notice | None
    steps: list[Step]
    scans: list[Scan]
    items: list[str]
    shipments: list[OtherShipment]
    zone_note: str
    preferences_url: str | None


def _place(location: dict[str, Any] | None) -> str | None:
    """City-level only: a city and its region (or country); never a street or postcode."""
    if not location:
        return None
    parts = [str(location[k]) for k in ("city", "region") if location.get(k)]
    if len(parts) < 2 and location.get("country"):
        parts.append(str(location["country"]))
    return ", ".join(parts) or None


def status_text(strings: Strings, carrier: str, event: TimelineEvent) -> str:
    """Our words for a scan (its substatus when the carrier's code gives one)."""
    if event.substatus:
        key = f"substatus.{event.substatus}"
        if strings.has(key):
            return strings(key)
    return strings(f"status.{event.status}")


def _steps(strings: Strings, shipment: Shipment) -> list[Step]:
    if shipment.status in ("returned_to_sender", "cancelled") or shipment.lost:
        return []
    current = _STEP_OF.get(shipment.status, 1)
    names = list(STEPS)
    if shipment.status == "available_for_pickup":
        names[3] = "available_for_pickup"
    return [Step(strings(f"step.{name}"),
                 "done" if i < current or shipment.status == "delivered" else
                 "current" if i == current else "todo") for i, name in enumerate(names)]


def _late(strings: Strings, dates: PageDates, shipment: Shipment, delay: Delay,
          now: datetime) -> Notice | None:
    if not delay.late or delay.promised is None:
        return None
    promised = dates.day(delay.promised)
    carrier = display_carrier(shipment.carrier)
    window = None
    if shipment.eta_p10 and shipment.eta_p90 and shipment.eta_p90 >= now:
        window = dates.window(max(shipment.eta_p10, now), shipment.eta_p90)
    if delay.state == "predicted_late" and window:
        text = strings("late_predicted", promised=promised, window=window)
    elif window:
        text = strings("late_past", promised=promised, window=window)
    else:
        text = strings("late_past_no_window", promised=promised, carrier=carrier)
    return Notice(strings("late_title"), text)


def tracking_page(*, shipment: Shipment, order: Order | None, timeline: Sequence[TimelineEvent],
                  siblings: Sequence[Shipment], delay: Delay, now: datetime, shop: str,
                  strings: Strings, dates: PageDates, link: Callable[[str], str],
                  preferences_url: str | None) -> TrackingPage:
    carrier = display_carrier(shipment.carrier)
    known = [e for e in timeline if e.status != "unknown"]
    best = next((e for e in reversed(known) if e.status == shipment.status), None)
    detail = status_text(strings, shipment.carrier, best) if best else None
    headline = strings("status.lost") if shipment.lost else strings(f"status.{shipment.status}")
    eta_open = (not shipment.finished and not shipment.lost and shipment.eta_p10 is not None
                and shipment.eta_p90 is not None and shipment.eta_p90 >= now)
    zone_label = dates.zone_label()
    return TrackingPage(
        title=strings("tracking_title", order=shipment.order_id, shop=shop),
        order_line=strings("order_number", order=shipment.order_id),
        headline=headline,
        detail=detail if detail != headline else None,
        carrier_line=strings("carrier_line", carrier=carrier,
                             tracking=shipment.tracking_number),
        delivered=(strings("delivered_on", day=dates.day(shipment.delivered_at))
                   if shipment.status == "delivered" and shipment.delivered_at else None),
        eta_window=(dates.window(max(shipment.eta_p10, now), shipment.eta_p90)
                    if eta_open and shipment.eta_p10 and shipment.eta_p90 else None),
        eta_likely=(strings("eta_likely", day=dates.day(max(shipment.eta_p50, now)))
                    if eta_open and shipment.eta_p50 else None),
        promised=(strings("promised_by", day=dates.day(shipment.promised_delivery_date))
                  if shipment.promised_delivery_date and not shipment.finished else None),
        late=None if shipment.lost else _late(strings, dates, shipment, delay, now),
        lost=(Notice(strings("lost_title"), strings("lost_text", shop=shop))
              if shipment.lost else None),
        steps=_steps(strings, shipment),
        scans=[Scan(status_text(strings, shipment.carrier, e), _place(e.location),
                    dates.moment(e.occurred_at), e.occurred_at.isoformat())
               for e in list(reversed(known))[:MAX_SCANS]],
        items=[strings("item_line", quantity=int(i.get("quantity", 1)), name=str(i.get("name")))
               for i in (order.items if order else []) if i.get("name")],
        shipments=[OtherShipment(
            strings("shipment_n", n=n, total=len(siblings)),
            strings("status.lost") if s.lost else strings(f"status.{s.status}"),
            link(s.shipment_id), s.shipment_id == shipment.shipment_id)
            for n, s in enumerate(siblings, 1)] if len(siblings) > 1 else [],
        zone_note=strings("times_in_zone", zone=zone_label or strings("utc_zone")),
        preferences_url=preferences_url,
    )
