"""Babel-backed date filters: every date a customer reads is in their timezone and locale.

The filters take the timezone and locale from the render context (the renderer puts a
`LocalFormatter` there), so templates only say *what* to show: `{{ occurred_at|datetime_local }}`,
`{{ eta_earliest|date_range(eta_latest, 'short') }}`.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import (
    format_date,
    format_interval,
    format_skeleton,
    format_time,
    get_datetime_format,
)
from jinja2 import pass_context
from jinja2.runtime import Context

Style = Literal["short", "long"]
FORMATTER_KEY = "_local_formatter"

# "short" is for SMS ("Tue, Mar 4"); "long" for e-mail ("Tuesday, March 4, 2025").
_SHORT_SKELETON = "MMMEd"
_LONG_RANGE_SKELETON = "MMMMEEEEd"


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone reached a template: we cannot know the customer's day."""


@lru_cache(maxsize=256)
def babel_locale(tag: str) -> Locale:
    """Parse a BCP 47-ish tag ("pt-BR", "es_MX", "de") into a Babel Locale, falling back to en."""
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """An IANA timezone; an unknown name falls back to UTC rather than failing a send."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# Formatting a day or a window is a pure function of (locale, days, style), and Babel's
# skeleton matching is the most expensive part of a render; the same few days recur in
# every message of a batch, so a cache makes dates nearly free.
@lru_cache(maxsize=4096)
def _format_day(locale: Locale, day: date, style: Style) -> str:
    if style == "short":
        return format_skeleton(_SHORT_SKELETON, day, locale=locale)
    return format_date(day, "full", locale=locale)


@lru_cache(maxsize=4096)
def _format_days(locale: Locale, first: date, last: date, style: Style) -> str:
    skeleton = _SHORT_SKELETON if style == "short" else _LONG_RANGE_SKELETON
    return format_interval(first, last, skeleton, fuzzy=True, locale=locale)


class LocalFormatter:
    """Formats dates and times for one customer: one locale, one timezone."""

    def __init__(self, locale: str, timezone: str) -> None:
        self.locale = babel_locale(locale)
        self.tz = zone(timezone)

    def _local(self, value: date | datetime) -> date | datetime:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise NaiveDatetimeError(f"timezone-naive datetime in a template: {value!r}")
            return value.astimezone(self.tz)
        return value

    def _day(self, value: date | datetime) -> date:
        local = self._local(value)
        return local.date() if isinstance(local, datetime) else local

    def day(self, value: date | datetime, style: Style = "long") -> str:
        """The calendar day `value` falls on for the customer."""
        return _format_day(self.locale, self._day(value), style)

    def time_of_day(self, value: datetime) -> str:
        """The customer's wall-clock time, e.g. 7:00 PM or 19:00."""
        local = self._local(value)
        if not isinstance(local, datetime):
            raise TypeError("time_local needs a datetime, not a date")
        return format_time(local.timetz(), "short", locale=self.locale)

    def day_and_time(self, value: datetime, style: Style = "long") -> str:
        """Day and time joined the way the locale joins them ("{1}, {0}" in English)."""
        pattern = str(get_datetime_format("short" if style == "short" else "long",
                                          locale=self.locale))
        return pattern.replace("{1}", self.day(value, style)).replace("{0}",
                                                                      self.time_of_day(value))

    def days(self, start: date | datetime, end: date | datetime | None,
             style: Style = "long") -> str:
        """A delivery window as days; a window inside one day collapses to that day."""
        first = self._day(start)
        last = self._day(end) if end is not None else first
        if last <= first:
            return self.day(first, style)
        return _format_days(self.locale, first, last, style)


def _formatter(ctx: Context) -> LocalFormatter:
    fmt = ctx.get(FORMATTER_KEY)
    if not isinstance(fmt, LocalFormatter):
        raise RuntimeError("date filters need a LocalFormatter in the render context")
    return fmt


@pass_context
def date_local(ctx: Context, value: date | datetime, style: Style = "long") -> str:
    """Jinja filter: `{{ when|date_local }}` / `{{ when|date_local('short') }}`."""
    return _formatter(ctx).day(value, style)


@pass_context
def time_local(ctx: Context, value: datetime) -> str:
    """Jinja filter: `{{ when|time_local }}`."""
    return _formatter(ctx).time_of_day(value)


@pass_context
def datetime_local(ctx: Context, value: datetime, style: Style = "long") -> str:
    """Jinja filter: `{{ when|datetime_local }}`."""
    return _formatter(ctx).day_and_time(value, style)


@pass_context
def date_range(ctx: Context, start: date | datetime, end: date | datetime | None = None,
               style: Style = "long") -> str:
    """Jinja filter: `{{ eta_earliest|date_range(eta_latest) }}`."""
    return _formatter(ctx).days(start, end, style)


FILTERS: dict[str, Any] = {
    "date_local": date_local,
    "time_local": time_local,
    "datetime_local": datetime_local,
    "date_range": date_range,
}
