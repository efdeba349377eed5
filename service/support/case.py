"""Everything about one shipment an agent needs, read in one go (the support API's one call
per shipment and the support page's shipment view are both drawn from it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service.eta.reasons import agent_reasons, facts_for
from service.security.links import tracking_url
from service.settings import Settings
from service.store import etas, notifications, support_actions
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store import trackers as trackers_db
from service.store.etas import EtaRecord
from service.store.notifications import Notification
from service.store.orders import Order
from service.store.shipments import Shipment, TimelineEvent
from service.store.support_actions import Mute
from service.store.trackers import StoredTrackerState
from service.support.delay import Delay, assess
from service.support.eta_history import Cause, causes
from service.zones import customer_zone


@dataclass(frozen=True)
class ShipmentCase:
    shipment: Shipment
    order: Order | None
    timeline: list[TimelineEvent]
    payloads: dict[int, dict[str, Any]]
    trackers: list[StoredTrackerState]
    etas: list[EtaRecord]  # oldest first: [0] is the first shown, [-1] the current one
    causes: list[Cause]
    notifications: list[Notification]
    mute: Mute | None
    zone: str  # the customer's
    delay: Delay
    tracking_url: str
    now: datetime

    @property
    def first(self) -> EtaRecord | None:
        return self.etas[0] if self.etas else None

    @property
    def current(self) -> EtaRecord | None:
        return self.etas[-1] if self.etas else None

    def reasons(self, eta: EtaRecord, zone_default: str) -> list[dict[str, Any]]:
        """An ETA's reasons in an agent's words (service.eta.reasons)."""
        return agent_reasons(eta.reasons, facts_for(self.shipment, self.timeline,
                                                    eta.predicted_at, zone_default))


async def load_case(conn: asyncpg.Connection, shipment: Shipment, settings: Settings,
                    now: datetime) -> ShipmentCase:
    order = await orders_db.get(conn, shipment.order_id)
    timeline = await shipments_db.timeline(conn, shipment.carrier, shipment.tracking_number)
    payloads = await shipments_db.raw_payloads(conn, shipment.carrier, shipment.tracking_number)
    trackers = await trackers_db.for_tracking(conn, shipment.carrier, shipment.tracking_number)
    history = await etas.history(conn, shipment.shipment_id)
    sent = await notifications.for_shipment(conn, shipment.shipment_id)
    mute = await support_actions.mute_of(conn, shipment.order_id)
    zone = customer_zone(order.timezone if order else None, shipment.destination_postal_code,
                         shipment.destination_country, settings.shop_timezone)
    prob_late = history[-1].prob_late if history else None
    return ShipmentCase(
        shipment=shipment, order=order, timeline=timeline, payloads=payloads, trackers=trackers,
        etas=history,
        causes=causes(history, timeline, shipment.updated_at), notifications=sent, mute=mute,
        zone=zone, delay=assess(shipment, timeline, prob_late, zone, now, settings),
        # Issued now: the link an agent hands over lives as long as any tracking link.
        tracking_url=tracking_url(str(settings.public_base_url),
                                  settings.parcelcast_secret_key, shipment.shipment_id, now),
        now=now)
