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
`workers.render.context.MessageContext` (typed; a test holds the templates to it). A plain
mapping with the same keys is accepted too (previews, samples). Datetimes must be
timezone-aware (a naive one raises `NaiveDatetimeError`). The renderer adds `locale` (the
tag dates are formatted in) and, for e-mail HTML, `subject`.

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
