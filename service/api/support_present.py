"""How a support case, a search hit and an audit entry look in the support API."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.api.present import event_json, iso
from service.settings import Settings
from service.store.etas import EtaRecord
from service.store.notifications import Notification
from service.store.orders import Order
from service.store.search import SearchHit
from service.store.shipments import TimelineEvent
from service.store.support_actions import SupportAction
from service.support.case import ShipmentCase
from service.support.eta_history import Cause
from service.support.messages_log import resend_of, state_and_why
from service.tracking.carrier_codes import carrier_name
from service.tracking.taxonomy import TERMINAL


def customer_json(order: Order | None) -> dict[str, Any] | None:
    if order is None:
        return None
    return {"name": order.customer_name, "email": order.customer_email,
            "phone": order.customer_phone, "locale": order.locale, "timezone": order.timezone}


def hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "shipment_id": hit.shipment_id, "order_id": hit.order_id, "carrier": hit.carrier,
        "carrier_name": carrier_name(hit.carrier),
        "tracking_number": hit.tracking_number,
        "status": "lost" if hit.lost_at and hit.status not in TERMINAL else hit.status,
        "created_at": iso(hit.created_at),
        "promised_delivery_date": iso(hit.promised_delivery_date),
        "delivered_at": iso(hit.delivered_at), "lost_at": iso(hit.lost_at),
        "eta_earliest": iso(hit.eta_p10), "eta_latest": iso(hit.eta_p90),
        "customer": {"name": hit.customer_name, "email": hit.customer_email,
                     "phone": hit.customer_phone} if hit.has_order else None,
    }


def window_json(eta: EtaRecord, zone: str) -> dict[str, Any]:
    tz = ZoneInfo(zone)
    local = {"timezone": zone}
    for name, at in (("earliest", eta.eta_p10), ("likely", eta.eta_p50),
                     ("latest", eta.eta_p90)):
        moment = at.astimezone(tz)
        local[name] = moment.date().isoformat()
        local[f"{name}_at"] = moment.isoformat()
    return {"earliest": iso(eta.eta_p10), "likely": iso(eta.eta_p50),
            "latest": iso(eta.eta_p90), "local": local, "predicted_at": iso(eta.predicted_at),
            "model_version": eta.model_version, "stage": eta.stage}


def _cause_json(cause: Cause) -> dict[str, Any]:
    return {"kind": cause.kind, "text": cause.text, "events": cause.events,
            "event": event_json(cause.event) if cause.event is not None else None}


def timeline_json(carrier: str, event: TimelineEvent) -> dict[str, Any]:
    return {**event_json(event), "id": event.id}


def notification_json(n: Notification, now: datetime) -> dict[str, Any]:
    """One message as an agent reads it (service.support.messages_log)."""
    state, why = state_and_why(n, now)
    return {
        "id": n.id, "moment": n.moment, "channel": n.channel, "recipient": n.recipient,
        "locale": n.locale, "state": state, "why": why, "stored_state": n.state,
        "provider_id": n.provider_id, "provider_status": n.provider_status,
        "attempts": n.attempts, "subject": n.subject, "resend_of": resend_of(n),
        "created_at": iso(n.created_at), "due_at": iso(n.due_at), "sent_at": iso(n.sent_at),
        "updated_at": iso(n.updated_at),
    }


def case_json(case: ShipmentCase, settings: Settings) -> dict[str, Any]:
    """GET /v1/support/shipments/{id}: everything about one shipment."""
    s, zone, shop_zone = case.shipment, case.zone, settings.shop_timezone
    current = case.current
    return {
        "shipment_id": s.shipment_id, "order_id": s.order_id, "carrier": s.carrier,
        "carrier_name": carrier_name(s.carrier), "service_level": s.service_level,
        "tracking_number": s.tracking_number, "status": "lost" if s.lost else s.status,
        "substatus": None if s.lost else s.substatus,
        "status_at": iso(s.status_occurred_at), "label_created_at": iso(s.label_created_at),
        "delivered_at": iso(s.delivered_at), "lost_at": iso(s.lost_at),
        "promised_delivery_date": iso(s.promised_delivery_date),
        "customer": customer_json(case.order),
        "items": case.order.items if case.order else [],
        "muted": None if case.mute is None else {
            "muted_at": iso(case.mute.muted_at), "actor": case.mute.actor,
            "note": case.mute.note},
        "timezone": zone,
        "timeline": [timeline_json(s.carrier, e) for e in case.timeline],
        "raw_timeline": [{"id": e.id, "received_at": iso(e.received_at),
                          "payload": case.payloads.get(e.id)} for e in case.timeline],
        "trackers": [{"source": t.source, "state": t.state, "detail": t.detail,
                      "message": t.message, "stated_at": iso(t.stated_at),
                      "updated_at": iso(t.updated_at)} for t in case.trackers],
        "eta_first": window_json(case.first, zone) if case.first else None,
        "eta_current": window_json(current, zone) if current else None,
        "probability_late": current.prob_late if current else None,
        "reasons": case.reasons(current, shop_zone) if current else [],
        "eta_history": [{
            "window": window_json(eta, zone), "probability_late": eta.prob_late,
            "reasons": case.reasons(eta, shop_zone), "caused_by": _cause_json(cause),
        } for eta, cause in zip(case.etas, case.causes, strict=True)],
        "delay": {"state": case.delay.state, "late": case.delay.late,
                  "delivered_late": case.delay.delivered_late,
                  "why": [{"kind": w.kind, "text": w.text, "since": iso(w.since)}
                          for w in case.delay.why]},
        "notifications": [notification_json(n, case.now) for n in case.notifications],
        "tracking_link": case.tracking_url,
    }


def audit_json(entry: SupportAction) -> dict[str, Any]:
    return {"id": entry.id, "order_id": entry.order_id, "shipment_id": entry.shipment_id,
            "notification_id": entry.notification_id, "action": entry.action,
            "actor": entry.actor, "note": entry.note, "detail": entry.detail,
            "created_at": iso(entry.created_at)}
