"""Turning a refreshed shipment into scheduled notifications (inside the refresh transaction)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import asyncpg

from predictor.calendar import is_business_day
from service.settings import Settings
from service.store import notifications as notifications_db
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store.orders import Order
from service.store.shipments import Shipment
from service.zones import calendar_country, customer_zone
from workers.planning.quiet_hours import sms_due_at, zone
from workers.planning.triggers import (
    SUPERSEDABLE,
    Moment,
    delay_moment,
    milestone_moments,
    missed_promise,
    revise_shown_date,
)


def business_hours_between(start: datetime, end: datetime, tz: str, country: str = "US"
                           ) -> float:
    """Hours between two instants that fall on business days (local dates in `tz`, public
    holidays of `country`)."""
    local_start, local_end = start.astimezone(zone(tz)), end.astimezone(zone(tz))
    hours = 0.0
    cursor = local_start
    while cursor < local_end:
        next_midnight = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(),
                                         tzinfo=cursor.tzinfo)
        stop = min(next_midnight, local_end)
        if is_business_day(cursor.date(), country):
            hours += (stop - cursor).total_seconds() / 3600
        cursor = stop
    return hours


def stalled(shipment: Shipment, now: datetime, tz: str, settings: Settings) -> Moment | None:
    if shipment.finished:
        return None
    country = calendar_country(shipment.destination_country, settings.shop_country)
    if shipment.first_scan_at is None and shipment.label_created_at is not None:
        limit = settings.stalled_label_business_days * 24
        if business_hours_between(shipment.label_created_at, now, tz, country) >= limit:
            return Moment("stalled")
    elif shipment.last_event_at is not None and shipment.status == "in_transit":
        overrides = settings.stalled_transit_hours_by_service
        limit = overrides.get(f"{shipment.carrier}:{shipment.service_level}",
                              overrides.get(shipment.carrier,
                                            settings.stalled_transit_business_hours))
        if business_hours_between(shipment.last_event_at, now, tz, country) >= limit:
            return Moment("stalled")
    return None


def _local_date(instant: datetime | None, tz: str) -> date | None:
    return instant.astimezone(zone(tz)).date() if instant is not None else None


# Like AfterShip's "expired": a shipment this old is history, not news, and its customer
# hears nothing more about it (imported or long-lost parcels included).
MAX_AGE = timedelta(days=30)


async def plan(conn: asyncpg.Connection, settings: Settings, shipment: Shipment,
               now: datetime) -> list[int]:
    """Schedule every moment this shipment now calls for; the ids of new notifications."""
    label = shipment.label_created_at
    if label is not None and now - label > MAX_AGE:
        return []
    if shipment.lost:
        return []  # declared lost by an agent: the shop speaks to the customer now
    order = await orders_db.get(conn, shipment.order_id)
    if order is None:
        return []  # nobody to tell yet; the order's arrival queues another refresh
    tz = customer_zone(order.timezone, shipment.destination_postal_code,
                       shipment.destination_country, settings.shop_timezone)
    today = now.astimezone(zone(tz)).date()
    status = shipment.status
    moments = milestone_moments(status, shipment.first_scan_at)
    delay = delay_moment(status, _local_date(getattr(shipment, f"eta_{settings.delay_quantile}"), tz),
                         shipment.promised_delivery_date, today, settings.delay_margin_days)
    revision = revise_shown_date(shipment.shown_date, shipment.pending_date,
                                 _local_date(shipment.eta_p90, tz), status)
    if (revision.shown_date, revision.pending_date) != (shipment.shown_date,
                                                        shipment.pending_date):
        await shipments_db.set_shown_date(conn, shipment.shipment_id, revision.shown_date,
                                          revision.pending_date)
    if delay is not None:
        moments.append(delay)  # a delay says more than a revision, and says it first
    elif revision.moment is not None:
        moments.append(revision.moment)
    for extra in (stalled(shipment, now, tz, settings),
                  missed_promise(status, shipment.promised_delivery_date, today)):
        if extra is not None:
            moments.append(extra)
    if not moments:
        return []
    rules = await notifications_db.rules(conn)
    items = []
    for moment in moments:
        for channel in rules.get(moment.name, []):
            recipient = _recipient(order, channel)
            if recipient is None:
                continue
            due = (sms_due_at(now, tz, settings.quiet_hours_start, settings.quiet_hours_end)
                   if channel == "sms" else now)
            items.append(notifications_db.NewNotification(
                shipment.shipment_id, shipment.order_id, moment.name, moment.key, channel,
                recipient, order.locale, due))
    ids = await notifications_db.schedule(conn, items, now)
    if ids:  # newer news: what waits of older news is replaced, what is news now stays
        await notifications_db.supersede(conn, shipment.shipment_id, sorted(SUPERSEDABLE),
                                         [(m.name, m.key) for m in moments], now)
    return ids


def _recipient(order: Order, channel: str) -> str | None:
    if channel == "email":
        return order.customer_email if order.email_consent else None
    return order.customer_phone if order.sms_consent else None
