"""POST /v1/webhooks/{shopify,easypost,aftership}: signed deliveries from platforms and carriers.

Each delivery: 503 if its secret is not configured, 401 unless the signature over the raw
body matches, 400/422 with field errors if it cannot be mapped (kept as 'rejected' for
re-processing, nothing else written), 200 'duplicate' if it was processed before, else
its orders, shipments, events and carrier estimates in one transaction with its record.
Mapping and writing are service.integrations.pipeline, shared with `parcelcast webhooks
reprocess`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from service.api.bodies import check_media_type
from service.api.keys import clock_key, metrics_key, pool_key
from service.api.responses import json_response
from service.errors import FieldError, ProblemError
from service.integrations import MappingError, WebhookBatch, pipeline
from service.limits import scrub
from service.security.webhook_secrets import Source, WebhookSecrets, load_webhook_secrets
from service.security.webhook_signatures import aftership_valid, easypost_valid, shopify_valid
from service.store import quality as quality_db
from service.store import shipments as shipments_db
from service.store import webhooks as webhooks_db
from service.store.quality import QualityBatch

# Optional: set by whoever builds the app (tests do); otherwise read from the environment.
webhook_secrets_key = web.AppKey("webhook_secrets", WebhookSecrets)


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
    check_media_type(request)
    body = await request.read()
    if not sender.verify(secret, body, request.headers.get(sender.signature_header)):
        raise ProblemError(401, "Unauthorized",
                           f"missing or invalid {sender.signature_header} signature",
                           [FieldError(sender.signature_header, "missing or invalid", "signature")],
                           type_slug="https://parcelcast.dev/problems/bad-signature")
    # Header values are text we store: bytes that were not UTF-8 arrive as lone surrogates.
    given = request.headers.get(sender.delivery_header) if sender.delivery_header else None
    headers = {h: scrub(request.headers[h])[:1000] for h in sender.kept_headers
               if h in request.headers}
    delivery_id = scrub(given or webhooks_db.body_delivery_id(body))[:200]
    return Delivery(sender, delivery_id, body, headers)


async def _reject(request: web.Request, delivery: Delivery, problem: ProblemError) -> ProblemError:
    """Keep the rejected delivery for re-processing, and return the problem to raise."""
    now = request.app[clock_key].now()
    quality = QualityBatch()
    quality.count(now, delivery.sender.source, "", "rejected")
    async with request.app[pool_key].acquire() as conn, conn.transaction():
        await webhooks_db.reject(conn, received_at=now, errors=pipeline.errors_of(problem),
                                 **delivery.record())
        await quality_db.record(conn, quality)
    return problem


async def _store(request: web.Request, delivery: Delivery, batch: WebhookBatch) -> web.Response:
    """Write the delivery's effects and its record in one transaction."""
    app = request.app
    now = app[clock_key].now()
    async with app[pool_key].acquire() as conn:
        try:
            async with conn.transaction():
                claimed = await webhooks_db.claim(conn, received_at=now, **delivery.record())
                if claimed is None:
                    await quality_db.record(
                        conn, pipeline.quality_of(delivery.sender.source, batch, None, now))
                    return json_response({"status": "duplicate", "delivery_id": delivery.delivery_id})
                applied = await pipeline.apply(conn, batch, now)
                await webhooks_db.finish(conn, claimed, applied.outcome, applied.detail, now)
                await quality_db.record(
                    conn, pipeline.quality_of(delivery.sender.source, batch, applied, now))
        except shipments_db.TrackingNumberTaken as exc:
            raise await _reject(request, delivery, pipeline.tracking_taken(exc)) from None
    metrics = app[metrics_key]
    metrics.events.labels("accepted").inc(applied.new_events)
    metrics.events.labels("duplicate").inc(applied.duplicates)
    for row in batch.events:
        if row.status == "unknown" and row.dedupe_key in applied.accepted_keys:
            metrics.unknown_status.labels(row.carrier).inc()
    return json_response({"status": applied.outcome, "delivery_id": delivery.delivery_id,
                          **applied.detail})


async def _receive(request: web.Request, sender: Sender) -> web.Response:
    """A signed delivery through the shared pipeline: identified, mapped, stored."""
    delivery = await _signed(request, sender)
    if sender is SHOPIFY:  # the trackers name both in the body
        delivery.topic = delivery.headers.get("X-Shopify-Topic", "")[:200] or None
        delivery.source_event_id = delivery.headers.get("X-Shopify-Event-Id", "")[:200] or None
    pool = request.app[pool_key]

    async def origin(carrier: str, tracking_number: str) -> tuple[str | None, str | None] | None:
        async with pool.acquire() as conn:
            return await webhooks_db.origin(conn, carrier, tracking_number)

    async def fulfillment(fulfillment_id: int) -> list[tuple[str, str]]:
        async with pool.acquire() as conn:
            return await webhooks_db.fulfillment_shipments(conn, fulfillment_id)

    try:
        found = pipeline.identify(sender.source, delivery.body, delivery.topic,
                                  delivery.source_event_id)
        delivery.topic, delivery.source_event_id = found.topic, found.source_event_id
        batch = await pipeline.build(sender.source, found, origin, fulfillment)
    except (MappingError, ProblemError) as exc:
        raise await _reject(request, delivery, pipeline.refusal(exc)) from None
    return await _store(request, delivery, batch)


async def shopify_webhook(request: web.Request) -> web.Response:
    return await _receive(request, SHOPIFY)


async def easypost_webhook(request: web.Request) -> web.Response:
    return await _receive(request, EASYPOST)


async def aftership_webhook(request: web.Request) -> web.Response:
    return await _receive(request, AFTERSHIP)
