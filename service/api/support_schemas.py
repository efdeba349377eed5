"""Response shapes of the support API, for the OpenAPI document (tests check real responses
against them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.api.schemas import EventOut


class CustomerOut(BaseModel):
    name: str | None
    email: str | None
    phone: str | None
    locale: str
    timezone: str | None


class ContactOut(BaseModel):
    name: str | None
    email: str | None
    phone: str | None


class SearchHitOut(BaseModel):
    shipment_id: str
    order_id: str
    carrier: str
    carrier_name: str
    tracking_number: str
    status: str
    created_at: str
    promised_delivery_date: str | None
    delivered_at: str | None
    lost_at: str | None
    eta_earliest: str | None
    eta_latest: str | None
    customer: ContactOut | None


class SearchOut(BaseModel):
    shipments: list[SearchHitOut]
    next_cursor: str | None


class LocalWindowOut(BaseModel):
    timezone: str
    earliest: str
    likely: str
    latest: str
    earliest_at: str
    likely_at: str
    latest_at: str


class WindowOut(BaseModel):
    """A p10-p50-p90 window in UTC and in the customer's zone."""

    earliest: str
    likely: str
    latest: str
    local: LocalWindowOut
    predicted_at: str
    model_version: str
    stage: str


class ReasonOut(BaseModel):
    feature: str | None
    hours: float
    text: str


class CauseOut(BaseModel):
    kind: str
    text: str
    event: EventOut | None
    events: int


class RevisionOut(BaseModel):
    window: WindowOut
    probability_late: float | None
    reasons: list[ReasonOut]
    caused_by: CauseOut


class WhyOut(BaseModel):
    kind: str
    text: str
    since: str | None


class DelayOut(BaseModel):
    state: str
    late: bool
    why: list[WhyOut]
    delivered_late: bool | None


class NotificationOut(BaseModel):
    id: int
    moment: str
    channel: str
    recipient: str
    locale: str
    state: str
    why: str | None
    stored_state: str
    provider_id: str | None
    provider_status: str | None
    attempts: int
    subject: str | None
    resend_of: int | None
    created_at: str
    due_at: str
    sent_at: str | None
    updated_at: str


class MuteOut(BaseModel):
    muted_at: str
    actor: str
    note: str


class RawEventOut(BaseModel):
    id: int
    received_at: str
    payload: dict[str, Any] | list[Any] | str | int | float | bool | None


class TimelineEventOut(EventOut):
    id: int
    substatus: str | None


class TrackerStateOut(BaseModel):
    """An aggregator's state of its tracker (EasyPost `error`, AfterShip `Expired`): about the
    tracking, not the parcel; never shown to the customer."""

    source: str
    state: str
    detail: str | None
    message: str | None
    stated_at: str | None
    updated_at: str


class SupportShipmentOut(BaseModel):
    shipment_id: str
    order_id: str
    carrier: str
    carrier_name: str
    service_level: str
    tracking_number: str
    status: str
    substatus: str | None = None
    status_at: str | None
    label_created_at: str | None
    delivered_at: str | None
    lost_at: str | None
    promised_delivery_date: str | None
    customer: CustomerOut | None
    items: list[dict[str, Any]]
    muted: MuteOut | None
    timezone: str
    timeline: list[TimelineEventOut]
    raw_timeline: list[RawEventOut]
    trackers: list[TrackerStateOut] = []
    eta_first: WindowOut | None
    eta_current: WindowOut | None
    probability_late: float | None
    reasons: list[ReasonOut]
    eta_history: list[RevisionOut]
    delay: DelayOut
    notifications: list[NotificationOut]
    tracking_link: str


class AuditEntryOut(BaseModel):
    id: int
    order_id: str
    shipment_id: str | None
    notification_id: int | None
    action: str
    actor: str
    note: str
    detail: dict[str, Any]
    created_at: str


class AuditOut(BaseModel):
    order_id: str
    entries: list[AuditEntryOut]


class ActionOut(BaseModel):
    done: AuditEntryOut
    notification_id: int | None = None
