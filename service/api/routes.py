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
from service.api.views import (
    events,
    health,
    lookup,
    messaging,
    orders,
    pages,
    quote,
    shipments,
    support,
    support_actions,
    support_page,
    webhooks,
)
from service.inputs import (
    MarkDeliveredIn,
    MarkLostIn,
    MuteIn,
    OrderIn,
    QuoteIn,
    ShipmentIn,
    SupportNoteIn,
    TrackingEventIn,
)

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
    Route("GET", "/v1/support/search", support.search,
          "Support: shipments by order, shipment, tracking number (any case, spaces or "
          "dashes), customer e-mail (any case), phone (as typed) or name prefix; `q` reads free "
          "text every way; newest first, paged by `cursor`", "shipments:read",
          query=support.SEARCH_FIELDS, responses={200: "a page of shipments",
                                                  422: "bad or missing criteria"}),
    Route("GET", "/v1/support/shipments/{shipment_id}", support.shipment,
          "Support: one shipment with its timeline (normalized and raw), first and current ETA "
          "windows, ETA revisions and their causes, chance of missing the promise, delay state "
          "and why, reasons in words, every message and the customer's tracking link",
          "shipments:read", responses={200: "the shipment", 404: "no such shipment"}),
    Route("GET", "/v1/support/orders/{order_id}/audit", support.audit,
          "Support: an order's audit log (who did what, when, why), newest first",
          "shipments:read", responses={200: "the audit log"}),
    Route("POST", "/v1/support/notifications/{notification_id}/resend", support_actions.resend,
          "Support: send a message again, now, to the order's current address",
          "support:write", SupportNoteIn,
          responses={201: "queued; the new notification's id", 404: "no such notification"}),
    Route("POST", "/v1/support/orders/{order_id}/mute", support_actions.mute,
          "Support: mute (or unmute) an order's messages; waiting ones are dropped",
          "support:write", MuteIn, responses={200: "done", 404: "no such order"}),
    Route("POST", "/v1/support/shipments/{shipment_id}/lost", support_actions.mark_lost,
          "Support: declare a shipment lost (no more ETAs or messages about it)",
          "support:write", MarkLostIn,
          responses={200: "done", 404: "no such shipment", 409: "already delivered or final"}),
    Route("POST", "/v1/support/shipments/{shipment_id}/delivered",
          support_actions.mark_delivered,
          "Support: mark a shipment delivered by hand (recorded as a scan of our own)",
          "support:write", MarkDeliveredIn,
          responses={200: "done", 404: "no such shipment", 409: "already final",
                     422: "invalid fields"}),
    Route("GET", "/support", support_page.home,
          "The support page: sign-in (an API key, kept in an HTTP-only SameSite=Strict "
          "cookie) or a trusted proxy's header, then search", query=("q", "cursor"),
          responses={200: "HTML page", 403: "the key lacks shipments:read"}, html=True),
    Route("POST", "/support/sign-in", support_page.sign_in_post, "Support page: sign in",
          responses={303: "signed in", 401: "unknown key", 403: "the key lacks the scope"},
          form_body=schemas.SignInForm, html=True),
    Route("POST", "/support/sign-out", support_page.sign_out_post, "Support page: sign out",
          responses={303: "signed out", 401: "not signed in", 403: "bad CSRF token"},
          form_body=schemas.CsrfForm, html=True),
    Route("GET", "/support/shipments/{shipment_id}", support_page.shipment_page,
          "Support page: one shipment with its timeline, ETA chart, reasons, messages, "
          "actions and the order's audit log",
          responses={200: "HTML page", 404: "no such shipment"}, html=True),
    Route("POST", "/support/shipments/{shipment_id}/{action}", support_page.act,
          "Support page: resend, mute, lost or delivered (CSRF-checked, audited)",
          responses={303: "done", 401: "not signed in", 403: "bad CSRF token or scope",
                     404: "no such thing",
                     409: "refused in this state", 422: "a note is needed"},
          form_body=schemas.SupportActionForm, html=True),
    Route("GET", "/t/{token}", pages.tracking_page,
          "The customer's tracking page (signed link), in the customer's language",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)",
                     410: "an expired link (a friendly page)"}, html=True),
    Route("GET", "/track", lookup.lookup_page,
          "Order lookup: order number and e-mail or postcode (`lang` picks the language)",
          query=("lang",), responses={200: "HTML form"}, html=True),
    Route("POST", "/track", lookup.lookup,
          "Order lookup: on a match, 303 to the newest shipment's tracking page "
          "(rate-limited per client address and order number)",
          responses={200: "not shipped yet", 303: "the tracking page",
                     404: "no match (the form again)", 422: "a field missing",
                     429: "too many attempts", 503: "the attempt counter is unavailable"},
          form_body=schemas.LookupForm, html=True),
    Route("GET", "/preferences/{token}", messaging.preferences_page,
          "The customer's notification preferences for an order (signed link)",
          responses={200: "HTML page", 404: "unknown link"}, html=True),
    Route("POST", "/preferences/{token}", messaging.save_preferences,
          "Stop a channel, or turn e-mail back on", responses={200: "HTML page",
                                                              404: "unknown link"},
          form_body=schemas.PreferencesForm, html=True),
    Route("GET", "/u/{token}", messaging.unsubscribe_page, "Unsubscribe confirmation page",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)"},
          html=True, store=False),
    Route("POST", "/u/{token}", messaging.unsubscribe,
          "One-click unsubscribe (RFC 8058)",
          responses={200: "HTML page", 404: "a link that is not valid (a friendly page)"},
          html=True),
)
