"""One delivery through the current adapters and into the database.

Shared by the webhook endpoints (a delivery as it arrives) and `parcelcast webhooks
reprocess` (a delivery as it was stored), so both take exactly the same path:

- `identify`: the body as JSON, and the topic and sender's event id it names;
- `build`: the pure adapter, plus the reads it may need: the shipment's origin zone (for a
  scan time sent without an offset and without a usable location), and the shipments of a
  Shopify fulfilment (a fulfilment event names only the fulfilment);
- `apply`: the batch's effects in the caller's transaction: orders and shipments merged
  (only the fields the sender stated, and only when not older than the stored version),
  events stored and deduped, carrier estimates kept (also before their shipment exists)
  only when not older than the stored one.

No request handling and no SQL here: the SQL lives in service.store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from service.api.bodies import malformed
from service.errors import FieldError, ProblemError, validation_failed
from service.integrations import MappingError, WebhookBatch, aftership, easypost, shopify
from service.limits import UNSTORABLE_MESSAGE, json_problems, scrub, scrubbed
from service.security.webhook_secrets import Source, as_source
from service.store import events as events_db
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store import trackers as trackers_db
from service.store import webhooks as webhooks_db
from service.store.quality import QualityBatch
from service.store.webhooks import StoredDelivery
from service.zones import address_zone

# (carrier, tracking number) -> (origin postal code, origin country), or None when unknown.
OriginLookup = Callable[[str, str], Awaitable[tuple[str | None, str | None] | None]]
# A Shopify fulfilment id -> the (carrier, tracking number) of each of its stored shipments.
FulfillmentLookup = Callable[[int], Awaitable[list[tuple[str, str]]]]


@dataclass(frozen=True)
class Identified:
    """A delivery's JSON and what it says it is."""

    payload: Any
    topic: str | None
    source_event_id: str | None
    notes: tuple[str, ...] = ()  # what was changed to be storable


def identify(source: Source, body: bytes, topic: str | None = None,
             source_event_id: str | None = None) -> Identified:
    """The body as JSON (ProblemError 400 when it is not), with its topic and event id.

    Shopify names both in headers (passed in); the trackers name them in the body.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(exc) from None
    deep = [e for e in json_problems(payload) if e.code == "too_deep"]
    if deep:
        raise malformed(f"{deep[0].field} is {deep[0].message}")
    # A sender's text we cannot store is replaced (U+FFFD) and noted, not refused: the raw
    # body keeps the original.
    payload, replaced = scrubbed(payload)
    notes = tuple(f"{path}: {UNSTORABLE_MESSAGE}; replaced with U+FFFD" for path in replaced[:20])
    if source == "shopify":
        return Identified(payload, topic, source_event_id, notes)
    topic_field, id_field = ("description", "id") if source == "easypost" else ("event", "event_id")
    if not isinstance(payload, dict):
        return Identified(payload, None, None, notes)
    named, event_id = payload.get(topic_field), payload.get(id_field)
    return Identified(payload, named[:200] if isinstance(named, str) else None,
                      event_id[:200] if isinstance(event_id, str) else None, notes)


async def build(source: Source, delivery: Identified, origin: OriginLookup,
                fulfillment: FulfillmentLookup) -> WebhookBatch:
    """The delivery's batch through the current adapter; MappingError names what is wrong."""
    batch = await _build(source, delivery, origin, fulfillment)
    batch.notes[:0] = delivery.notes
    return batch


async def _build(source: Source, delivery: Identified, origin: OriginLookup,
                 fulfillment: FulfillmentLookup) -> WebhookBatch:
    if source == "shopify":
        mapped = shopify.parse(delivery.topic, delivery.payload)
        if isinstance(mapped, shopify.EventUpdate):
            return mapped.batch(await fulfillment(mapped.fulfillment_id))
        return mapped
    parse = easypost.parse if source == "easypost" else aftership.parse
    parsed = parse(delivery.payload)
    if isinstance(parsed, str):
        return WebhookBatch(ignored=f"event {parsed[:100]!r} is not handled")
    where = await origin(parsed.carrier, parsed.tracking_number)
    return parsed.batch(address_zone(*where) if where else None)


def refusal(exc: MappingError | ProblemError) -> ProblemError:
    """The 4xx problem for a delivery that cannot be mapped."""
    return validation_failed(exc.errors) if isinstance(exc, MappingError) else exc


def errors_of(problem: ProblemError) -> list[dict[str, str]]:
    """What a rejected delivery's record keeps about why."""
    found = [e.as_dict() for e in problem.errors] or [{"field": "body", "message": problem.detail}]
    return [{k: scrub(v) for k, v in error.items()} for error in found]


def tracking_taken(exc: shipments_db.TrackingNumberTaken) -> ProblemError:
    carrier, number = exc.args
    return ProblemError(
        409, "Conflict", f"{carrier} tracking number {number!r} already belongs to another "
        "shipment", [FieldError("tracking_number", "already used by another shipment",
                                "conflict")])


@dataclass
class Applied:
    """What one batch did."""

    outcome: str  # processed | ignored
    detail: dict[str, Any]
    accepted_keys: set[bytes] = field(default_factory=set)
    new_events: int = 0
    duplicates: int = 0
    corrected: int = 0
    estimates_before_shipment: list[str] = field(default_factory=list)  # their carriers
    after_delivery: set[bytes] = field(default_factory=set)  # IngestResult.after_delivery


def quality_of(source: str, batch: WebhookBatch, applied: Applied | None, now: datetime
               ) -> QualityBatch:
    """What a delivery adds to the data-quality counters (`applied` None: a duplicate)."""
    quality = QualityBatch()
    quality.batch(source, batch.events, applied.accepted_keys if applied else set(), now,
                  after_delivery=applied.after_delivery if applied else frozenset())
    if applied is None:
        return quality
    if batch.notes:
        carriers = {row.carrier for row in batch.events} | {e.carrier for e in batch.estimates}
        quality.count(now, source, carriers.pop() if len(carriers) == 1 else "",
                      "webhook_notes")
    for carrier in applied.estimates_before_shipment:
        quality.count(now, source, carrier, "estimate_before_shipment")
    return quality


async def apply(conn: asyncpg.Connection, batch: WebhookBatch, now: datetime, *,
                not_after: datetime | None = None, correct_source: str | None = None,
                ) -> Applied:
    """Write a batch in the caller's transaction (raises TrackingNumberTaken).

    `not_after`: orders and shipments written since then are newer than this delivery and are
    left alone (re-processing passes the delivery's receipt time). `correct_source`: also set
    the normalized status of events this source stored before to what the current maps say.
    """
    kept_newer = 0
    for update in batch.orders:
        if await orders_db.merge(conn, update.order_id, update.order, update.carried, now,
                                 not_after, update.updated_at) is None:
            kept_newer += 1
    for ship in batch.shipments:
        if await shipments_db.merge(conn, ship.shipment_id, ship.shipment, ship.carried, now,
                                    not_after, ship.updated_at) is None:
            kept_newer += 1
    result = await events_db.ingest(conn, batch.events, now)
    accepted = len(result.accepted_keys)
    corrected = 0
    if correct_source is not None:
        corrected = await webhooks_db.correct_events(conn, batch.events, correct_source, now)
    estimates = await webhooks_db.set_estimates(conn, batch.estimates, now)
    await trackers_db.record(conn, batch.trackers, now)
    detail: dict[str, Any] = {
        "orders": len(batch.orders), "shipments": len(batch.shipments),
        "events": {"accepted": accepted, "duplicates": len(batch.events) - accepted},
        "estimates": estimates.changed,
    }
    if estimates.before_shipment:
        detail["estimates_kept_for_later"] = len(estimates.before_shipment)
    if corrected:
        detail["events"]["corrected"] = corrected
    if kept_newer:
        detail["kept_newer"] = kept_newer
    if batch.ignored:
        detail["ignored"] = batch.ignored
    if batch.notes:
        detail["notes"] = batch.notes[:20]
    outcome = "ignored" if batch.ignored and not batch.shipments else "processed"
    return Applied(outcome, detail, result.accepted_keys, accepted, len(batch.events) - accepted,
                   corrected, estimates.before_shipment, result.after_delivery)


@dataclass
class Failure:
    id: int
    source: str
    delivery_id: str
    error: str


@dataclass
class Report:
    """What `parcelcast webhooks reprocess` did (or, dry, would do)."""

    deliveries: int = 0
    processed: int = 0
    ignored: int = 0
    new_events: int = 0
    duplicates: int = 0
    corrected: int = 0
    kept_newer: int = 0
    failed: list[Failure] = field(default_factory=list)


def _summary(problem: ProblemError) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors_of(problem)[:3])


async def reprocess(conn: asyncpg.Connection, now: datetime, *, source: str | None = None,
                    since: datetime | None = None, delivery: int | None = None,
                    dry_run: bool = False) -> Report:
    """Feed stored deliveries, oldest first, through the current adapters and `apply`.

    Idempotent: events dedupe on their keys, estimates never move to an older one, orders and
    shipments are only merged where nothing has written them since the delivery arrived, and
    a corrected event status is what the maps say every time. Each delivery commits on its
    own (a dry run rolls everything back at the end). A delivery that still fails is left as
    it was (a rejected one keeps the latest errors) and reported.
    """
    report = Report()
    dry = conn.transaction() if dry_run else None
    if dry is not None:
        await dry.start()
    try:
        for delivery_id in await webhooks_db.stored_ids(conn, source, since, delivery):
            report.deliveries += 1
            await _reprocess_one(conn, delivery_id, now, report)
    finally:
        if dry is not None:
            await dry.rollback()
    return report


async def _reprocess_one(conn: asyncpg.Connection, id_: int, now: datetime, report: Report
                         ) -> None:
    async with conn.transaction():
        row = await webhooks_db.lock(conn, id_)
        if row is None:  # deleted meanwhile
            return
        source = as_source(row.source)

        async def origin(carrier: str, tracking_number: str) -> Any:
            return await webhooks_db.origin(conn, carrier, tracking_number)

        async def fulfillment(fulfillment_id: int) -> list[tuple[str, str]]:
            return await webhooks_db.fulfillment_shipments(conn, fulfillment_id)

        try:
            found = identify(source, row.body, row.topic, row.source_event_id)
            batch = await build(source, found, origin, fulfillment)
        except (MappingError, ProblemError) as exc:
            await _still_failing(conn, row, refusal(exc), now, report)
            return
        except Exception as exc:  # an adapter bug: report it, go on with the others
            await _still_failing(conn, row, _unexpected(exc), now, report)
            return
        try:
            async with conn.transaction():
                applied = await apply(conn, batch, now, not_after=row.received_at,
                                      correct_source=source)
                if row.outcome != applied.outcome:
                    await webhooks_db.finish(conn, id_, applied.outcome,
                                             {**applied.detail, "reprocessed": True}, now)
        except shipments_db.TrackingNumberTaken as exc:
            await _still_failing(conn, row, tracking_taken(exc), now, report)
            return
        except asyncpg.PostgresError as exc:  # this delivery's writes only (a savepoint)
            await _still_failing(conn, row, _unexpected(exc), now, report)
            return
    report.processed += applied.outcome == "processed"
    report.ignored += applied.outcome == "ignored"
    report.new_events += applied.new_events
    report.duplicates += applied.duplicates
    report.corrected += applied.corrected
    report.kept_newer += int(applied.detail.get("kept_newer", 0))


def _unexpected(exc: Exception) -> ProblemError:
    return ProblemError(500, "Internal error", f"{type(exc).__name__}: {exc}"[:500])


async def _still_failing(conn: asyncpg.Connection, row: StoredDelivery, problem: ProblemError,
                         now: datetime, report: Report) -> None:
    if row.outcome == "rejected":
        await webhooks_db.note_errors(conn, row.id, errors_of(problem), now)
    report.failed.append(Failure(row.id, row.source, row.delivery_id, _summary(problem)))
