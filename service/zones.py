"""Resolving carrier times sent without an offset: which zone was the scan in?

EasyPost and AfterShip pass some carriers' local times through unchanged. A local time is
only an instant once we know the zone, and we never guess silently: every resolution says
what it was based on, and the adapters store that beside the event.

Order of evidence: a US ZIP (the zipcodes package carries each ZIP's zone, else its
state's); a country whose zones all agree at that moment; a US/Canadian/Australian state
or province; a city that names an IANA zone; the shipment's origin; finally UTC, which is
what EasyPost itself assumes when it has no location.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import holidays
import zipcodes
from babel.core import get_global

from predictor.lanes import STATE_TIMEZONES
from service.limits import TIME_RANGE_MESSAGE, OutOfRange, check_instant

# The zone most of each state's or province's people live in.
REGION_ZONES: dict[str, dict[str, str]] = {
    # The predictor keeps the US table; territories are added here.
    "US": {**STATE_TIMEZONES, "GU": "Pacific/Guam", "VI": "America/St_Thomas"},
    "CA": {
        "AB": "America/Edmonton", "BC": "America/Vancouver", "MB": "America/Winnipeg",
        "NB": "America/Moncton", "NL": "America/St_Johns", "NS": "America/Halifax",
        "NT": "America/Yellowknife", "NU": "America/Iqaluit", "ON": "America/Toronto",
        "PE": "America/Halifax", "QC": "America/Toronto", "SK": "America/Regina",
        "YT": "America/Whitehorse",
    },
    "AU": {
        "ACT": "Australia/Sydney", "NSW": "Australia/Sydney", "NT": "Australia/Darwin",
        "QLD": "Australia/Brisbane", "SA": "Australia/Adelaide", "TAS": "Australia/Hobart",
        "VIC": "Australia/Melbourne", "WA": "Australia/Perth",
    },
}
_ORDINARY_DAY = datetime(2026, 1, 15, 12, tzinfo=UTC)
_ZIP5 = re.compile(r"^(\d{5})(?:-?\d{4})?$")


@dataclass(frozen=True)
class Resolved:
    """An aware instant and how its zone was found ("offset" when the sender gave one)."""

    at: datetime
    zone: str | None
    basis: str  # offset | zip | country | region | city | origin | utc_default
    date_only: bool = False

    @property
    def inferred(self) -> bool:
        return self.basis != "offset"

    def note(self) -> dict[str, object]:
        """What goes into the stored payload so the inference can be audited and redone."""
        note: dict[str, object] = {"inferred": self.inferred, "basis": self.basis,
                                   "zone": self.zone}
        if self.date_only:
            note["date_only"] = True
        return note


def country_code(value: str | None) -> str | None:
    """ISO 3166 alpha-2 for an alpha-2 or alpha-3 code ("USA" -> "US"), else None."""
    if not value:
        return None
    code = value.strip().upper()
    if len(code) == 2 and code.isalpha():
        return code
    if len(code) == 3 and code.isalpha():
        aliases = get_global("territory_aliases").get(code)
        if aliases:
            return str(aliases[0])
    return None


@lru_cache(maxsize=4096)
def zip_zone(postal_code: str) -> str | None:
    """The zone of a US ZIP (5 or ZIP+4), from its own record, else from its state."""
    match = _ZIP5.match(postal_code.strip())
    if not match:
        return None
    try:
        records = zipcodes.matching(match.group(1))  # type: ignore[no-untyped-call]
    except (TypeError, ValueError):
        return None
    for record in records:
        if record.get("timezone"):
            return str(record["timezone"])
        state = record.get("state")
        if state and state in REGION_ZONES["US"]:
            return REGION_ZONES["US"][state]
    return None


@lru_cache(maxsize=1)
def _city_zones() -> dict[str, str]:
    zones: dict[str, str] = {}
    for name in sorted(available_timezones()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/")):
            zones.setdefault(name.rsplit("/", 1)[1].replace("_", " ").lower(), name)
    return zones


def _country_zone(country: str, local: datetime) -> str | None:
    """The country's zone when all of its zones give the same offset at this local time."""
    zones = get_global("territory_zones").get(country) or []
    if not zones:
        return None
    offsets = {local.replace(tzinfo=ZoneInfo(zone)).utcoffset() for zone in zones}
    return str(zones[0]) if len(offsets) == 1 else None


def location_zone(local: datetime, postal_code: str | None = None, country: str | None = None,
                  region: str | None = None, city: str | None = None) -> tuple[str, str] | None:
    """(zone, basis) from what a scan's location says, or None when it says too little."""
    country = country_code(country)
    if postal_code and country in (None, "US"):
        zone = zip_zone(postal_code)
        if zone:
            return zone, "zip"
    if country:
        zone = _country_zone(country, local)
        if zone:
            return zone, "country"
    if region:
        for candidate in ([country] if country else ["US", "CA", "AU"]):
            zone = REGION_ZONES.get(candidate, {}).get(region.strip().upper())
            if zone:
                return zone, "region"
    if city:
        zone = _city_zones().get(city.strip().lower())
        if zone:
            return zone, "city"
    return None


def parse_carrier_time(value: str) -> tuple[datetime, bool]:
    """(datetime, date_only) from an ISO 8601 date or date-time, with or without offset."""
    text = value.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time()), True
    return datetime.fromisoformat(text), False


def resolve(value: str, postal_code: str | None = None, country: str | None = None,
            region: str | None = None, city: str | None = None,
            fallback_zone: str | None = None) -> Resolved:
    """An aware instant for a carrier time string; raises ValueError if it is not ISO 8601."""
    parsed, date_only = parse_carrier_time(value)
    if not 1969 <= parsed.year <= 2100:  # before any arithmetic: year 1 or 9999 overflows
        raise OutOfRange(TIME_RANGE_MESSAGE)
    resolved = _resolve(parsed, date_only, postal_code, country, region, city, fallback_zone)
    check_instant(resolved.at)
    return resolved


def _resolve(parsed: datetime, date_only: bool, postal_code: str | None, country: str | None,
             region: str | None, city: str | None, fallback_zone: str | None) -> Resolved:
    if parsed.tzinfo is not None:
        return Resolved(parsed.astimezone(UTC), None, "offset", date_only)
    found = location_zone(parsed, postal_code, country, region, city)
    if found is None and fallback_zone:
        found = (fallback_zone, "origin")
    if found is None:
        return Resolved(parsed.replace(tzinfo=UTC), "UTC", "utc_default", date_only)
    zone, basis = found
    return Resolved(parsed.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC), zone, basis, date_only)


def address_zone(postal_code: str | None, country: str | None, region: str | None = None,
                 at: datetime | None = None) -> str | None:
    """A best-effort zone for an address (a customer's, a shipment origin), or None."""
    # Any ordinary day will do: only countries whose zones always agree resolve here.
    local = (at or _ORDINARY_DAY).replace(tzinfo=None)
    found = location_zone(local, postal_code, country, region)
    return found[0] if found else None


def customer_zone(order_timezone: str | None, postal_code: str | None, country: str | None,
                  default: str) -> str:
    """The one answer to "which zone does this customer live in?" (quiet hours, the dates a
    customer reads, the end of a promised day): the order's own zone, else the destination's
    (a US ZIP, or a country with one zone), else the shop's default zone (SHOP_TIMEZONE)."""
    if order_timezone and _is_zone(order_timezone):
        return order_timezone
    return address_zone(postal_code, country) or default


@lru_cache(maxsize=512)
def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError):
        return False
    return True


@lru_cache(maxsize=256)
def calendar_country(country: str | None, default: str) -> str:
    """The country whose business days apply to a destination: its own when we have its public
    holidays, else the shop's (SHOP_COUNTRY)."""
    code = country_code(country)
    if code and code in holidays.list_supported_countries():
        return code
    return default
