"""POST /v1/webhooks/{shopify,easypost,aftership}: signed deliveries from platforms and carriers.

Each delivery: 503 if its secret is not configured, 401 unless the signature over the raw
body matches, 400/422 with field errors if it cannot be mapped (kept as 'rejected' for
re-processing, nothing else written), 200 'duplicate' if it was processed before, else
its orders, shipments, events and carrier estimates in one transaction with its record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from service.db import events as events_db
from service.db import orders as orders_db
from service.db import shipments as shipments_db
from service.db import webhooks as webhooks_db
from service.errors import FieldError, ProblemError, validation_failed
from service.integrations import MappingError, WebhookBatch, aftership, easypost, shopify
from service.integrations.secrets import Source, WebhookSecrets, load_webhook_secrets
from service.integrations.signatures import aftership_valid, easypost_valid, shopify_valid
from service.integrations.timezones import address_zone
from service.keys import clock_key, metrics_key, pool_key
from service.responses import json_response
from service.validation import malformed

# Optional: set by whoever builds the app (tests do); otherwise read from the environment.
webhook_secrets_key = web.AppKey("webhook_secrets", WebhookSecrets)

Tracker = easypost.TrackerUpdate | aftership.TrackingUpdate


@dataclass(frozen=True)
class Sender:
    source: Source
    signature_header: str
    verify: Callable[[str, bytes, str | None], bool]
    delivery_header: str | None  # the sender's own delivery id, when it sends one
    kept_headers: tuple[str, ...]


SHOPIFY = Sender("shopify", "X-Shopify-Hmac-Sha256", shopify_valid, "X-Shopify-Webhook-Id", (
    "X-Shopify-Topic", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Shop-Domain",
    "X-Shopify-API-Version", "X-Shopify-Triggered-At", "X-Shopify-Hmac-Sha256"))
EASYPOST = Sender("easypost", "X-Hmac-Signature", easypost_valid, None,
                  ("X-Hmac-Signature", "X-Timestamp", "X-Path", "User-Agent"))
AFTERSHIP = Sender("aftership", "aftership-hmac-sha256", aftership_valid, None,
                   ("aftership-hmac-sha256", "am-webhook-version", "User-Agent"))


@dataclass
class Delivery:
    """One signed delivery, before it is mapped."""

    sender: Sender
    delivery_id: str
    body: bytes
    headers: dict[str, str]
    topic: str | None = None
    source_event_id: str | None = None

    def record(self) -> dict[str, Any]:
        return {"source": self.sender.source, "delivery_id": self.delivery_id, "body": self.body,
                "headers": self.headers, "topic": self.topic,
                "source_event_id": self.source_event_id}


def _secrets(app: web.Application) -> WebhookSecrets:
    return app.get(webhook_secrets_key) or load_webhook_secrets()


async def _signed(request: web.Request, sender: Sender) -> Delivery:
    """The verified raw delivery; 503 when unconfigured, 401 when the signature is wrong."""
    secret = _secrets(request.app).for_source(sender.source)
    if secret is None:
        raise ProblemError(
            503, "Not configured",
            f"{sender.source.upper()}_WEBHOOK_SECRET is not set; this endpoint accepts nothing "
            "until it is", type_slug="https://parcelcast.dev/problems/not-configured")
    body = await request.read()
    if not sender.verify(secret, body, request.headers.get(sender.signature_header)):
        raise ProblemError(401, "Unauthorized",
                           f"missing or invalid {sender.signature_header} signature",
                           type_slug="https://parcelcast.dev/problems/bad-signature")
    given = request.headers.get(sender.delivery_header) if sender.delivery_header else None
    headers = {h: request.headers[h] for h in sender.kept_headers if h in request.headers}
    return Delivery(sender, (given or webhooks_db.body_delivery_id(body))[:200], body, headers)


async def _reject(request: web.Request, delivery: Delivery, problem: ProblemError) -> ProblemError:
    """Keep the rejected delivery for re-processing, and return the problem to raise."""
    async with request.app[pool_key].acquire() as conn:
        await webhooks_db.reject(conn, received_at=request.app[clock_key].now(),
                                 errors=[e.as_dict() for e in problem.errors]
                                 or [{"field": "body", "message": problem.detail}],
                                 **delivery.record())
    return problem


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(exc) from None


def _tracker_ids(payload: Any, topic_field: str, id_field: str) -> tuple[str | None, str | None]:
    if not isinstance(payload, dict):
        return None, None
    topic, event_id = payload.get(topic_field), payload.get(id_field)
    return (topic if isinstance(topic, str) else None,
            event_id if isinstance(event_id, str) else None)


async def _store(request: web.Request, delivery: Delivery, batch: WebhookBatch) -> web.Response:
    """Write the delivery's effects and its record in one transaction."""
    app = request.app
    now = app[clock_key].now()
    async with app[pool_key].acquire() as conn:
        try:
            async with conn.transaction():
                claimed = await webhooks_db.claim(conn, received_at=now, **delivery.record())
                if claimed is None:
                    return json_response({"status": "duplicate", "delivery_id": delivery.delivery_id})
                for order_id, order in batch.orders:
                    await orders_db.upsert(conn, order_id, order, now)
                for shipment_id, shipment in batch.shipments:
                    await shipments_db.upsert(conn, shipment_id, shipment, now)
                result = await events_db.ingest(conn, batch.events, now)
                estimates = await webhooks_db.set_estimates(conn, batch.estimates, now)
                accepted = len(result.accepted_keys)
                detail = {
                    "orders": len(batch.orders), "shipments": len(batch.shipments),
                    "events": {"accepted": accepted, "duplicates": len(batch.events) - accepted},
                    "estimates": estimates,
                }
                if batch.ignored:
                    detail["ignored"] = batch.ignored
                outcome = "ignored" if batch.ignored and not batch.shipments else "processed"
                await webhooks_db.finish(conn, claimed, outcome, detail, now)
        except shipments_db.TrackingNumberTaken as exc:
            carrier, number = exc.args
            raise await _reject(request, delivery, ProblemError(
                409, "Conflict", f"{carrier} tracking number {number!r} already belongs to "
                "another shipment", [FieldError("tracking_number", "already used by another "
                                                "shipment", "conflict")])) from None
    metrics = app[metrics_key]
    metrics.events.labels("accepted").inc(accepted)
    metrics.events.labels("duplicate").inc(len(batch.events) - accepted)
    for row in batch.events:
        if row.status == "unknown" and row.dedupe_key in result.accepted_keys:
            metrics.unknown_status.labels(row.carrier).inc()
    return json_response({"status": outcome, "delivery_id": delivery.delivery_id, **detail})


async def _map(request: web.Request, delivery: Delivery, build: Callable[[Any], WebhookBatch]
               ) -> WebhookBatch:
    """Run a pure mapping; its failure becomes a kept, rejected delivery and a 4xx."""
    try:
        return build(_json(delivery.body))
    except MappingError as exc:
        raise await _reject(request, delivery, validation_failed(exc.errors)) from None
    except ProblemError as problem:
        raise await _reject(request, delivery, problem) from None


async def _origin_zone(request: web.Request, tracker: Tracker) -> str | None:
    """The shipment's origin zone: the last resort for a carrier time without an offset."""
    async with request.app[pool_key].acquire() as conn:
        origin = await webhooks_db.origin(conn, tracker.carrier, tracker.tracking_number)
    return address_zone(*origin) if origin else None


async def shopify_webhook(request: web.Request) -> web.Response:
    delivery = await _signed(request, SHOPIFY)
    delivery.topic = request.headers.get("X-Shopify-Topic")
    delivery.source_event_id = request.headers.get("X-Shopify-Event-Id")
    batch = await _map(request, delivery, lambda payload: shopify.parse(delivery.topic, payload))
    return await _store(request, delivery, batch)


async def _tracker_webhook(request: web.Request, sender: Sender,
                           parse: Callable[[Any], Tracker | str], topic_field: str,
                           id_field: str) -> web.Response:
    delivery = await _signed(request, sender)
    parsed: Tracker | str | None = None

    def first_pass(payload: Any) -> WebhookBatch:
        nonlocal parsed
        delivery.topic, delivery.source_event_id = _tracker_ids(payload, topic_field, id_field)
        parsed = parse(payload)
        return WebhookBatch(ignored=f"event {parsed!r} is not handled"
                            if isinstance(parsed, str) else None)

    batch = await _map(request, delivery, first_pass)
    if parsed is not None and not isinstance(parsed, str):
        tracker, zone = parsed, await _origin_zone(request, parsed)
        # Times are resolved now that the origin is known; this can still reject a scan.
        batch = await _map(request, delivery, lambda _payload: tracker.batch(zone))
    return await _store(request, delivery, batch)


async def easypost_webhook(request: web.Request) -> web.Response:
    return await _tracker_webhook(request, EASYPOST, easypost.parse, "description", "id")


async def aftership_webhook(request: web.Request) -> web.Response:
    return await _tracker_webhook(request, AFTERSHIP, aftership.parse, "event", "event_id")
