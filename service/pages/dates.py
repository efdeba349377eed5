"""Dates on the customer's pages: in the customer's zone, in the locale's own patterns (CLDR
skeletons through Babel, never a fixed "EEEE d MMMM"), with a plain name for the zone
("Central Time", "hora central").

Babel's skeleton matching costs ~0.5 ms a call, so every formatted day, time and zone name
is cached: a page's dates cost microseconds once a few pages have been served.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache

from babel import Locale
from babel.dates import format_interval, format_skeleton, format_time, get_timezone_name

from workers.render.dates import babel_locale, zone

DAY = "MMMMEEEEd"  # "Thursday, November 5" / "Donnerstag, 5. November" as each locale says it
SHORT_DAY = "MMMEd"  # "Thu, Nov 5"
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal"})


@lru_cache(maxsize=8192)
def _day(locale: Locale, day: date, skeleton: str) -> str:
    return format_skeleton(skeleton, day, locale=locale)


@lru_cache(maxsize=8192)
def _days(locale: Locale, first: date, last: date) -> str:
    return format_interval(first, last, DAY, fuzzy=True, locale=locale)


@lru_cache(maxsize=4096)
def _time(locale: Locale, at: time) -> str:
    return format_time(at, "short", locale=locale)


@lru_cache(maxsize=1024)
def _zone_name(locale: Locale, name: str) -> str | None:
    if name in _UTC_NAMES:
        return None
    return str(get_timezone_name(zone(name), width="long", locale=locale))


class PageDates:
    """Formats dates for one reader: one locale, one zone."""

    def __init__(self, locale: str, zone_name: str) -> None:
        self.locale = babel_locale(locale)
        self.zone_name = zone_name
        self.tz = zone(zone_name)

    def local_day(self, value: date | datetime) -> date:
        return value.astimezone(self.tz).date() if isinstance(value, datetime) else value

    def day(self, value: date | datetime) -> str:
        return _day(self.locale, self.local_day(value), DAY)

    def window(self, start: datetime, end: datetime) -> str:
        """A delivery window as days; one day when it starts and ends on the same one."""
        first, last = self.local_day(start), self.local_day(end)
        return self.day(first) if last <= first else _days(self.locale, first, last)

    def moment(self, value: datetime) -> str:
        """A scan's day and time, short: "Thu, Nov 5, 2:30 PM" / "Do., 5. Nov., 14:30"."""
        local = value.astimezone(self.tz)
        day = _day(self.locale, local.date(), SHORT_DAY)
        clock = _time(self.locale, local.time().replace(second=0, microsecond=0))
        pattern = str(self.locale.datetime_formats["short"])
        return pattern.replace("{1}", day).replace("{0}", clock)

    def zone_label(self) -> str | None:
        """The zone's plain name in the reader's language, None for UTC (say it in words)."""
        return _zone_name(self.locale, self.zone_name)
