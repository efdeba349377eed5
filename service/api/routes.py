"""The route table: handlers, their scopes and their documented shapes, in one place.

The app registers these routes and /openapi.json is built from the same list,
so the document cannot drift from the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from aiohttp import web
from pydantic import BaseModel

from service.api import schemas
from service.api.views import events, health, messaging, orders, pages, quote, shipments, webhooks
from service.inputs import OrderIn, QuoteIn, ShipmentIn, TrackingEventIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = type[BaseModel] | type[msgspec.Struct]


@dataclass(frozen=True)
class Route:
    """One route. The 4xx/503 answers every route of its kind gives (a body's 400/413/415/
    422, a key's 401/403, a store's 503...) are added by service.api.openapi from these
    flags; `responses` holds the route's own."""

    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None = None  # None: public
    body: Body | None = None
    batch_body: bool = False  # the body may also be {"events": [...]} or a list
    query: tuple[str, ...] = ()
    form_body: type[BaseModel] | None = None  # application/x-www-form-urlencoded (Twilio)
    html: bool = False  # answers text/html (a customer's page; path token is any text)
    responses: dict[int, str] = field(default_factory=dict)
    store: bool = True  # reads or writes PostgreSQL: 503 while it is unavailable
    # Webhooks: the sender's signature header (required) and other headers it sends.
    signature: str | None = None
    headers: tuple[str, ...] = ()


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz, "The process is alive",
          responses={200: "alive"}, store=False),
    Route("GET", "/readyz", health.readyz, "PostgreSQL and Redis answer",
          responses={200: "ready", 503: "a dependency is down"}, store=False),
    Route("GET", "/metrics", health.metrics, "Prometheus metrics",
          responses={200: "metrics", 401: "METRICS_TOKEN is set and was not sent",
                     404: "METRICS_BIND is set: served only on that address"},
          store=False),
    Route("GET", "/openapi.json", health.openapi, "This document",
          responses={200: "OpenAPI 3.1"}, store=False),
    Route("PUT", "/v1/orders/{order_id}", orders.put_order, "Create or replace an order",
          "events:write", OrderIn, responses={200: "replaced", 201: "created"}),
    Route("GET", "/v1/orders/{order_id}", orders.get_order,
          "An order with its shipments and their timelines", "shipments:read",
          responses={200: "the order", 404: "no such order"}),
    Route("PUT", "/v1/shipments/{shipment_id}", shipments.put_shipment,
          "Create or replace a shipment", "events:write", ShipmentIn,
          responses={200: "replaced", 201: "created", 409: "tracking number taken"}),
    Route("GET", "/v1/shipments/{shipment_id}", shipments.get_shipment,
          "A shipment with its status, timeline and promised date", "shipments:read",
          responses={200: "the shipment", 404: "no such shipment"}),
    Route("GET", "/v1/shipments", shipments.list_shipments,
          "Shipments by tracking number or order", "shipments:read",
          query=("tracking_number", "order_id"),
          responses={200: "matching shipments", 422: "neither parameter, or a malformed one"}),
    Route("POST", "/v1/tracking-events", events.post_tracking_events,
          "One tracking event or a batch of up to 1,000", "events:write", TrackingEventIn,
          batch_body=True, responses={202: "counts of accepted, duplicate and rejected events"}),
    Route("POST", "/v1/eta/quote", quote.post_quote,
          "Checkout delivery windows for a lane, before any shipment exists", "shipments:read",
          QuoteIn, responses={200: "earliest/likely/latest per carrier and service",
                              503: "no model promoted yet, or the store is unavailable"}),
    Route("POST", "/v1/webhooks/shopify", webhooks.shopify_webhook,
          "Shopify order and fulfilment webhooks (X-Shopify-Hmac-Sha256)",
          body=schemas.ShopifyDelivery,
          responses={200: "processed, ignored or duplicate", 409: "tracking number taken",
                     503: "secret not configured, or the store is unavailable"},
          signature="X-Shopify-Hmac-Sha256",
          headers=("X-Shopify-Topic", "X-Shopify-Webhook-Id", "X-Shopify-Event-Id")),
    Route("POST", "/v1/webhooks/easypost", webhooks.easypost_webhook,
          "EasyPost tracker.created / tracker.updated events (X-Hmac-Signature)",
          body=schemas.EasyPostDelivery,
          responses={200: "processed, ignored or duplicate",
                     503: "secret not configured, or the store is unavailable"},
          signature="X-Hmac-Signature"),
    Route("POST", "/v1/webhooks/aftership", webhooks.aftership_webhook,
          "AfterShip tracking webhooks (aftership-hmac-sha256)",
          body=schemas.AfterShipDelivery,
          responses={200: "processed, ignored or duplicate",
                     503: "secret not configured, or the store is unavailable"},
          signature="aftership-hmac-sha256"),
    Route("POST", "/v1/webhooks/twilio/inbound", messaging.twilio_inbound,
          "Twilio inbound SMS: STOP/START/HELP (X-Twilio-Signature)",
          responses={200: "TwiML"}, form_body=schemas.TwilioInbound,
          signature="X-Twilio-Signature"),
    Route("POST", "/v1/webhooks/twilio/status", messaging.twilio_status,
          "Twilio delivery status callback (X-Twilio-Signature)",
          responses={204: "recorded"}, form_body=schemas.TwilioStatus,
          signature="X-Twilio-Signature"),
    Route("GET", "/t/{token}", pages.tracking_page,
          "The customer's tracking page (signed link)",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)",
                     410: "an expired link (a friendly page)"}, html=True),
    Route("GET", "/u/{token}", messaging.unsubscribe_page, "Unsubscribe confirmation page",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)"},
          html=True, store=False),
    Route("POST", "/u/{token}", messaging.unsubscribe,
          "One-click unsubscribe (RFC 8058)",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)"},
          html=True),
)
