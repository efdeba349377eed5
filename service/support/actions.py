"""What an agent may do, each written to the order's audit log in the same transaction:
resend a message, mute an order, declare a shipment lost, or mark it delivered by hand."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import asyncpg
import orjson

from service.store import accuracy, events, notifications, support_actions
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store.events import EventRow
from service.store.shipments import Shipment
from service.store.support_actions import SupportAction
from service.tracking.taxonomy import status_rank


class NotFound(Exception):
    """The thing acted on does not exist."""

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"{what} {key!r} does not exist")
        self.what, self.key = what, key


class Refused(Exception):
    """The action makes no sense in the current state (e.g. marking a delivered parcel lost)."""


async def _shipment(conn: asyncpg.Connection, shipment_id: str) -> Shipment:
    shipment = await shipments_db.get(conn, shipment_id)
    if shipment is None:
        raise NotFound("shipment", shipment_id)
    return shipment


async def resend(conn: asyncpg.Connection, notification_id: int, actor: str, note: str,
                 now: datetime, shipment_id: str | None = None) -> tuple[SupportAction, int]:
    """A new copy of a message, due now, to the order's current address for its channel
    (else the one it went to); consent and opt-outs still apply when it is sent, a mute does
    not. With `shipment_id`, only a message of that shipment. Returns the audit entry and the
    new notification's id."""
    async with conn.transaction():
        original = await notifications.get(conn, notification_id)
        if original is None or shipment_id not in (None, original.shipment_id):
            raise NotFound("notification", str(notification_id))
        order = await orders_db.get(conn, original.order_id)
        current = None
        if order is not None:
            current = order.customer_email if original.channel == "email" else order.customer_phone
        recipient = current or original.recipient
        locale = order.locale if order is not None else original.locale
        new_id = await notifications.resend(conn, original, recipient, locale, now)
        entry = await support_actions.record(
            conn, order_id=original.order_id, shipment_id=original.shipment_id,
            notification_id=new_id, action="resend", actor=actor, note=note, now=now,
            detail={"of": original.id, "moment": original.moment, "channel": original.channel,
                    "recipient": recipient})
    return entry, new_id


async def mute(conn: asyncpg.Connection, order_id: str, muted: bool, actor: str, note: str,
               now: datetime) -> SupportAction:
    """Mute (or unmute) an order's messages; muting drops the ones still waiting."""
    async with conn.transaction():
        if await orders_db.get(conn, order_id) is None:
            raise NotFound("order", order_id)
        if muted:
            changed = await support_actions.mute(conn, order_id, actor, note, now)
            dropped = await notifications.suppress_waiting(conn, "muted by support", now,
                                                           order_id=order_id)
            detail = {"changed": changed, "waiting_dropped": dropped}
        else:
            detail = {"changed": await support_actions.unmute(conn, order_id)}
        return await support_actions.record(
            conn, order_id=order_id, action="mute" if muted else "unmute", actor=actor,
            note=note, now=now, detail=detail)


async def mark_lost(conn: asyncpg.Connection, shipment_id: str, actor: str, note: str,
                    now: datetime) -> SupportAction:
    """Declare a shipment lost: no more ETAs, sweeps or messages about it (a carrier's final
    scan still counts); the messages still waiting are dropped."""
    async with conn.transaction():
        shipment = await _shipment(conn, shipment_id)
        if shipment.finished:
            raise Refused(f"the shipment is already {shipment.status.replace('_', ' ')}")
        changed = await support_actions.mark_lost(conn, shipment_id, now)
        await accuracy.score_undelivered(conn, shipment_id)  # its misses stop growing
        dropped = await notifications.suppress_waiting(
            conn, "shipment declared lost by support", now, shipment_id=shipment_id)
        return await support_actions.record(
            conn, order_id=shipment.order_id, shipment_id=shipment_id, action="mark_lost",
            actor=actor, note=note, now=now,
            detail={"changed": changed, "waiting_dropped": dropped})


def _delivered_event(shipment: Shipment, actor: str, at: datetime) -> EventRow:
    basis = f"support\x1f{shipment.carrier}\x1f{shipment.tracking_number}\x1fdelivered"
    return EventRow(
        dedupe_key=hashlib.sha256(basis.encode()).digest()[:16], carrier=shipment.carrier,
        tracking_number=shipment.tracking_number, carrier_event_id="support:delivered",
        status="delivered", status_rank=status_rank("delivered"), raw_code="support:delivered",
        description="Marked delivered by support", location=None,
        occurred_at=at.astimezone(UTC),
        payload=orjson.dumps({"source": "support", "actor": actor, "status": "delivered",
                              "occurred_at": at.isoformat()}).decode())


async def mark_delivered(conn: asyncpg.Connection, shipment_id: str, actor: str, note: str,
                         now: datetime, delivered_at: datetime | None = None) -> SupportAction:
    """Record a delivery the carrier never scanned, as an event of our own: the shipment's
    status, ETA and messages follow from it as from any scan."""
    at = delivered_at or now
    if at > now:
        raise Refused("a delivery cannot be in the future")
    async with conn.transaction():
        shipment = await _shipment(conn, shipment_id)
        if shipment.finished:
            raise Refused(f"the shipment is already {shipment.status.replace('_', ' ')}")
        await events.ingest(conn, [_delivered_event(shipment, actor, at)], now)
        return await support_actions.record(
            conn, order_id=shipment.order_id, shipment_id=shipment_id,
            action="mark_delivered", actor=actor, note=note, now=now,
            detail={"delivered_at": at.astimezone(UTC).isoformat(),
                    "was": shipment.status})
