"""Resolving carrier times sent without an offset: which zone was the scan in?

EasyPost and AfterShip pass some carriers' local times through unchanged. A local time is
only an instant once we know the zone, and we never guess silently: every resolution says
what it was based on, and the adapters store that beside the event.

Order of evidence (the `basis` recorded beside the event names the rule that answered):
1. postal code: a US ZIP ("zip": the zipcodes package carries each ZIP's zone, else its
   state's), else a Canadian or Australian postal code's province/state ("postal_code");
2. city + region ("city_region"): a US city in its state (the zone most of the city's ZIPs
   have), or a city naming an IANA zone of the region's country;
3. region/state ("region"): the zone most of a US/Canadian/Australian state's people live in;
4. country ("country"): a country whose zones all agree at that moment;
5. a city alone that names an IANA zone ("city"); the shipment's origin ("origin"); finally
   UTC ("utc_default"), which is what EasyPost itself assumes when it has no location.

A resolution is `certain` when the location pins the zone (a US ZIP, a city whose ZIPs all
share one zone, a country with one offset); the dedupe key uses the UTC instant then, and the
local time and location otherwise (service.tracking.ingest.time_key).
"""

from __future__ import annotations

import gc
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import numpy as np
import zipcodes
from babel.core import get_global

from predictor.lanes import STATE_TIMEZONES, zip_records, zip_table
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
# The province of a Canadian postal code, by its first letter (Canada Post, "Canadian
# Addressing Guide", section "Postal code": the first letter of the forward sortation area
# names the province or territory; X is shared by NT and NU, whose main zones differ, so it
# is left out).
CA_POSTAL_PROVINCES: dict[str, str] = {
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON",
    "L": "ON", "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC",
    "Y": "YT",
}
# The state of an Australian postcode, by range (Australia Post, "Postcode ranges by state",
# as listed in its Postcode Guide; 0200-0299 and 2600-2618/2900-2920 are the ACT, 0800-0999
# the Northern Territory). First match wins.
AU_POSTCODE_STATES: tuple[tuple[int, int, str], ...] = (
    (200, 299, "ACT"), (800, 999, "NT"), (2600, 2618, "ACT"), (2900, 2920, "ACT"),
    (1000, 2999, "NSW"), (3000, 3999, "VIC"), (8000, 8999, "VIC"), (4000, 4999, "QLD"),
    (9000, 9999, "QLD"), (5000, 5999, "SA"), (6000, 6999, "WA"), (7000, 7999, "TAS"),
)
# Bases whose zone the location pins down (see the module docstring).
CERTAIN_BASES = frozenset({"zip", "city_region", "country"})
_CA_POSTAL = re.compile(r"^([A-Z])\d[A-Z]\s*\d[A-Z]\d$")
_AU_POSTCODE = re.compile(r"^\d{4}$")
_ORDINARY_DAY = datetime(2026, 1, 15, 12, tzinfo=UTC)
_ZIP5 = re.compile(r"^(\d{5})(?:-?\d{4})?$")


@dataclass(frozen=True)
class Resolved:
    """An aware instant and how its zone was found ("offset" when the sender gave one)."""

    at: datetime
    zone: str | None
    # offset | zip | postal_code | city_region | region | country | city | origin | utc_default
    basis: str
    date_only: bool = False
    certain: bool = True  # the location pins the zone (CERTAIN_BASES), or an offset was sent
    local: datetime | None = None  # the scan's wall time (naive), in `zone` when one is known

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


def warm() -> None:
    """Build the ZIP tables every serving process consults, at start rather than at the
    first refresh or scan that needs them: our table (predictor.lanes) and the zipcodes
    package's own data. Measured in a worker: ~150 MB for a moment while they are built
    (CPU work: call it in a thread), ~55 MB kept; built at the first refresh, that moment
    was counted in the peak RSS of a worker under traffic (543 MB), and idle RSS showed
    none of what stays."""
    zip_table()
    zipcodes.is_real("10001")  # type: ignore[no-untyped-call]


def zip_zone(postal_code: str) -> str | None:
    """The zone of a US ZIP (5 or ZIP+4), from its own record, else from its state.

    Looked up in the ZIP table the ETA features use (predictor.lanes: the record's zone,
    else its state's, the same rule) when the ZIP is there with a state of ours; the
    zipcodes package's own search (milliseconds a ZIP: it scans every record) only for the
    rest (military and freely associated states' ZIPs, ZIPs without coordinates)."""
    match = _ZIP5.match(postal_code.strip())
    if not match:
        return None
    info = zip_table().get(match.group(1))
    if info is not None and info.state in REGION_ZONES["US"]:
        return info.timezone
    return _searched_zip_zone(match.group(1))


@lru_cache(maxsize=4096)
def _searched_zip_zone(zip5: str) -> str | None:
    try:
        records = zipcodes.matching(zip5)  # type: ignore[no-untyped-call]
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


def postal_region(postal_code: str, country: str | None) -> tuple[str, str] | None:
    """(country, province/state) of a Canadian or Australian postal code, else None."""
    code = postal_code.strip().upper()
    if country in (None, "CA"):
        match = _CA_POSTAL.match(code)
        if match and match.group(1) in CA_POSTAL_PROVINCES:
            return "CA", CA_POSTAL_PROVINCES[match.group(1)]
    if country == "AU" and _AU_POSTCODE.match(code):
        number = int(code)
        for low, high, state in AU_POSTCODE_STATES:
            if low <= number <= high:
                return "AU", state
    return None


@lru_cache(maxsize=1)
def _us_city_zones() -> dict[tuple[str, str], Counter[str]]:
    """(city, state) -> how many of the city's ZIPs are in each zone. Built the way
    predictor.lanes.zip_table is: the package's records copied into arrays and dropped
    first, so the table's objects do not sit among ~140 MB of freed records (or, read
    through ``zipcodes.list_all()``, beside the records kept cached for good)."""
    rows = [(" ".join(str(r["city"]).lower().split()), str(r["state"]), str(r["timezone"]))
            for r in zip_records() if r.get("timezone") and r.get("state") and r.get("city")]
    columns = np.array(rows, dtype=str).reshape(-1, 3)
    del rows
    gc.collect()
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for city, state, zone in columns.tolist():
        table[(city, state)][zone] += 1
    return dict(table)


@lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    return {str(zone): str(country)
            for country, zones in get_global("territory_zones").items() for zone in zones}


@lru_cache(maxsize=4096)
def city_region_zone(city: str, region: str, country: str | None) -> tuple[str, bool] | None:
    """(zone, certain) of a city in its region: a US city's ZIPs (certain when they all agree),
    else a city naming an IANA zone in the region's country."""
    name, state = " ".join(city.lower().split()), region.strip().upper()
    if country in (None, "US") and state in REGION_ZONES["US"]:
        counts = _us_city_zones().get((name, state))
        if counts:
            return counts.most_common(1)[0][0], len(counts) == 1
    named = _city_zones().get(name)
    if named is None:
        return None
    if country is None:
        country = next((c for c in ("US", "CA", "AU") if state in REGION_ZONES[c]), None)
    return (named, True) if country and _zone_countries().get(named) == country else None


def locate(local: datetime, postal_code: str | None = None, country: str | None = None,
           region: str | None = None, city: str | None = None
           ) -> tuple[str, str, bool] | None:
    """(zone, basis, certain) from what a scan's location says, or None when it says too
    little; the rules in the order of the module docstring."""
    country = country_code(country)
    if postal_code and country in (None, "US"):
        zone = zip_zone(postal_code)
        if zone:
            return zone, "zip", True
    if postal_code:
        found = postal_region(postal_code, country)
        if found:
            return REGION_ZONES[found[0]][found[1]], "postal_code", False
    if city and region:
        pinned = city_region_zone(city, region, country)
        if pinned:
            return pinned[0], "city_region", pinned[1]
    if region:
        for candidate in ([country] if country else ["US", "CA", "AU"]):
            zone = REGION_ZONES.get(candidate, {}).get(region.strip().upper())
            if zone:
                return zone, "region", False
    if country:
        zone = _country_zone(country, local)
        if zone:
            return zone, "country", True
    if city:
        zone = _city_zones().get(city.strip().lower())
        if zone:
            return zone, "city", False
    return None


def location_zone(local: datetime, postal_code: str | None = None, country: str | None = None,
                  region: str | None = None, city: str | None = None) -> tuple[str, str] | None:
    """(zone, basis) from what a scan's location says, or None when it says too little."""
    found = locate(local, postal_code, country, region, city)
    return (found[0], found[1]) if found else None


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
    found = locate(parsed.replace(tzinfo=None), postal_code, country, region, city)
    if found is None and fallback_zone:
        found = (fallback_zone, "origin", False)
    if parsed.tzinfo is not None:
        # The instant is given; the wall time is read in the zone a naive copy of the same
        # scan would be placed in (so both copies read alike), else as the sender wrote it.
        wall = parsed.astimezone(ZoneInfo(found[0])) if found else parsed
        return Resolved(parsed.astimezone(UTC), None, "offset", date_only,
                        bool(found and found[2]), wall.replace(tzinfo=None))
    if found is None:
        return Resolved(parsed.replace(tzinfo=UTC), "UTC", "utc_default", date_only, False,
                        parsed)
    zone, basis, certain = found
    return Resolved(parsed.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC), zone, basis,
                    date_only, certain, parsed)


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


# The countries whose public holidays we have, read from the holidays package's registry:
# its list_supported_countries() imports every country's module to list their subdivisions
# (280 modules, 8 MB, seconds of CPU), which the first plan in a worker paid on its event loop.


def _holiday_countries() -> frozenset[str]:
    try:  # the registry is not documented API: a later release may move it
        from holidays.registry import EntityLoader

        return frozenset(EntityLoader.get_country_codes())
    except (ImportError, AttributeError):
        import holidays

        return frozenset(holidays.list_supported_countries())


HOLIDAY_COUNTRIES = _holiday_countries()


@lru_cache(maxsize=256)
def calendar_country(country: str | None, default: str) -> str:
    """The country whose business days apply to a destination: its own when we have its public
    holidays, else the shop's (SHOP_COUNTRY)."""
    code = country_code(country)
    if code and code in HOLIDAY_COUNTRIES:
        return code
    return default
