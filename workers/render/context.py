"""The template context: everything a message template may use, typed, in one place.

The renderer's required and optional keys come from this class, and a test renders every
template with StrictUndefined against it, so a template cannot use a name the sender
never sets (or the other way round) without a test failing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

Moment = date | datetime


@dataclass(frozen=True, kw_only=True)
class Item:
    name: str
    quantity: int = 1


@dataclass(frozen=True, kw_only=True)
class MessageContext:
    """What a template is told. Datetimes must be aware; they are shown in `timezone`."""

    order_id: str  # the shop's order number as the customer knows it ("#1042")
    shop_name: str
    carrier_name: str  # display name ("DHL Paket")
    tracking_number: str
    tracking_url: str  # the public tracking page (short link in SMS)
    unsubscribe_url: str  # one-click unsubscribe (also in the List-Unsubscribe header)
    customer_name: str | None = None
    status_detail: str | None = None  # the carrier's own words, e.g. for an exception
    timezone: str = "UTC"  # the customer's IANA zone; every date is shown in it
    eta_earliest: Moment | None = None  # current delivery window (p10..p90)
    eta_latest: Moment | None = None
    previous_eta_earliest: Moment | None = None  # the window the customer was told before
    previous_eta_latest: Moment | None = None
    promised_date: Moment | None = None  # what the shop promised at checkout
    occurred_at: datetime | None = None  # when the triggering event happened
    event_location: str | None = None  # where it happened / the pickup point
    pickup_until: Moment | None = None  # last day to collect (available_for_pickup)
    items: tuple[Item, ...] = field(default_factory=tuple)

    def template_vars(self) -> dict[str, Any]:
        """The context as template variables (items as plain mappings)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["items"] = [dataclasses.asdict(i) for i in self.items]
        return out


REQUIRED_KEYS: Final = tuple(
    f.name for f in dataclasses.fields(MessageContext)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
OPTIONAL_DEFAULTS: Final[dict[str, Any]] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else ())
    for f in dataclasses.fields(MessageContext) if f.name not in REQUIRED_KEYS}
# What the renderer adds itself: the locale dates are formatted in, the compact SMS switch,
# the e-mail subject (for the HTML title), and the date formatter the filters use.
RENDERER_KEYS: Final = frozenset({"locale", "compact", "subject", "_local_formatter"})
