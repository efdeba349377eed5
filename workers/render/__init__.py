"""Customer notifications: render a moment to an e-mail or an SMS, in the customer's language.

Public API
----------
- `Renderer(templates_dir=None, *, max_sms_segments=2)` with
  `render_email(moment, locale, context) -> RenderedEmail(subject, html, text, locale_used)` and
  `render_sms(moment, locale, context) -> RenderedSms(body, segments, encoding, locale_used, shortened)`.
- `count_segments(text) -> SegmentInfo(encoding, units, segments)` (workers.render.segments).
- `build_email(...) -> email.message.EmailMessage` (workers.render.email_message).
- `preview(moment, channel, locale, out=None) -> str` (workers.render.preview).
- Errors: `RenderError` > `TemplateMissingError`, `ContextError`, `SmsTooLongError`.

Moments: see `workers.render.moments.MOMENTS`. Locales shipped: en, es, de, pt-BR; any other
tag falls back (es-MX -> es -> en, pt-PT -> pt-BR -> en, fr -> en).

Template context
----------------
Required (a missing one raises `ContextError`):
    order_id: str             the shop's order number as the customer knows it ("#1042")
    shop_name: str
    carrier_name: str         display name ("DHL Paket")
    tracking_number: str
    tracking_url: str         public tracking page (short link in SMS)
    unsubscribe_url: str      one-click unsubscribe (also in the List-Unsubscribe header)
Optional (default None, or () for items):
    customer_name: str | None
    status: str | None        taxonomy status (service.tracking.taxonomy), e.g. "out_for_delivery"
    status_detail: str | None the carrier's own words for an exception
    timezone: str             the customer's IANA zone, default "UTC"; all dates are shown in it
    eta_earliest, eta_latest: datetime | date | None      current delivery window (p10..p90)
    previous_eta_earliest, previous_eta_latest: ...       the window before a delay/revision
    promised_date: datetime | date | None                 what the shop promised at checkout
    occurred_at: datetime | None   when the triggering event happened (delivered, attempted, last scan)
    event_location: str | None     where it happened / the pickup point
    pickup_until: date | datetime | None                  last day to collect (available_for_pickup)
    items: list of {"name": str, "quantity": int}
Datetimes must be timezone-aware (a naive one raises `NaiveDatetimeError`). The renderer adds
`locale` (the tag dates are formatted in) and, for e-mail HTML, `subject`.

Filters available to templates: `date_local(style='long'|'short')`, `time_local`,
`datetime_local(style)`, `date_range(end, style)`.
"""

from __future__ import annotations

from workers.render.dates import NaiveDatetimeError
from workers.render.errors import (
    ContextError,
    RenderError,
    SmsTooLongError,
    TemplateMissingError,
)
from workers.render.moments import MOMENTS, SHIPPED_LOCALES
from workers.render.render import RenderedEmail, RenderedSms, Renderer
from workers.render.segments import SegmentInfo, count_segments

__all__ = [
    "MOMENTS", "SHIPPED_LOCALES", "ContextError", "NaiveDatetimeError", "RenderError",
    "RenderedEmail", "RenderedSms", "Renderer", "SegmentInfo", "SmsTooLongError",
    "TemplateMissingError", "count_segments",
]
