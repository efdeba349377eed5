"""Business-day arithmetic for pickups and deliveries.

Carriers in this model neither pick up nor deliver on Sundays or on public holidays
(US federal holidays by default; Brazilian national holidays for Olist data). Saturdays
are business days: most US ground networks deliver on Saturday.

Scalar helpers take and return ``datetime.date``; vectorised helpers work on numpy
``datetime64[D]`` arrays through ``numpy.busdaycalendar`` so that simulating or scoring a
million shipments stays fast.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

# Monday..Saturday are working days; Sunday is not.
WEEKMASK = "1111110"
# Range of years for which holiday calendars are materialised; wide enough for historical
# imports (Olist 2016) and for several years of future promises.
_FIRST_YEAR = 2010
_LAST_YEAR = 2040


@lru_cache(maxsize=16)
def holiday_dates(country: str = "US") -> np.ndarray:
    """Public holidays of ``country`` (``holidays`` package codes) as sorted datetime64[D]."""
    calendar = holidays.country_holidays(country, years=range(_FIRST_YEAR, _LAST_YEAR + 1))
    return np.array(sorted(calendar.keys()), dtype="datetime64[D]")


@lru_cache(maxsize=16)
def busday_calendar(country: str = "US") -> np.busdaycalendar:
    """A numpy business-day calendar: Monday–Saturday minus the country's holidays."""
    return np.busdaycalendar(weekmask=WEEKMASK, holidays=holiday_dates(country))


def is_business_day(day: date, country: str = "US") -> bool:
    """True when carriers pick up and deliver on ``day``."""
    return bool(np.is_busday(np.datetime64(day, "D"), busdaycal=busday_calendar(country)))


def next_business_day(day: date, country: str = "US") -> date:
    """The first business day strictly after ``day``."""
    out = np.busday_offset(
        np.datetime64(day, "D") + 1, 0, roll="forward", busdaycal=busday_calendar(country)
    )
    return _to_date(out)


def business_day_on_or_after(day: date, country: str = "US") -> date:
    """``day`` itself when it is a business day, otherwise the next one."""
    out = np.busday_offset(np.datetime64(day, "D"), 0, roll="forward",
                           busdaycal=busday_calendar(country))
    return _to_date(out)


def add_business_days(day: date, n: int, country: str = "US") -> date:
    """Move ``n`` business days after ``day`` (a non-business ``day`` first rolls forward)."""
    out = np.busday_offset(np.datetime64(day, "D"), n, roll="forward",
                           busdaycal=busday_calendar(country))
    return _to_date(out)


def business_days_between(start: date, end: date, country: str = "US") -> int:
    """Business days in ``[start, end)``; negative when ``end`` is before ``start``."""
    return int(np.busday_count(np.datetime64(start, "D"), np.datetime64(end, "D"),
                               busdaycal=busday_calendar(country)))


def delivery_date_from_hours(as_of: datetime, hours_remaining: float, tz: str,
                             country: str = "US") -> date:
    """Local delivery date for an ETA ``hours_remaining`` after ``as_of``, in ``tz``.

    The instant ``as_of + hours`` is converted to the customer's timezone; if that local
    day is a Sunday or holiday no delivery can happen on it, so the date rolls forward to
    the next business day (the parcel will arrive then at the earliest).
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    local = (as_of + timedelta(hours=float(hours_remaining))).astimezone(ZoneInfo(tz))
    return business_day_on_or_after(local.date(), country)


def local_dates(instants: pd.Series | pd.DatetimeIndex, tz: str) -> np.ndarray:
    """UTC instants → calendar dates (datetime64[D]) as seen in timezone ``tz``."""
    idx = pd.DatetimeIndex(instants)
    return idx.tz_convert(tz).tz_localize(None).values.astype("datetime64[D]")


def local_dates_by_zone(instants: pd.Series, zones: pd.Series) -> np.ndarray:
    """Like :func:`local_dates` with one timezone per row (grouped, so it stays vectorised)."""
    out = np.empty(len(instants), dtype="datetime64[D]")
    values = pd.DatetimeIndex(instants)
    zone_values = zones.to_numpy()
    for zone in pd.unique(zone_values):
        mask = zone_values == zone
        out[mask] = local_dates(values[mask], str(zone))
    return out


def local_to_utc(naive_local: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """Naive local datetime64 values, one IANA zone per row → UTC datetime64[ns] (naive).

    Nonexistent local times (spring-forward gap) shift forward; ambiguous ones take the
    standard-time reading. Simulated events happen in daytime, so neither case matters
    much, but neither may raise.
    """
    out = np.empty(len(naive_local), dtype="datetime64[ns]")
    for zone in pd.unique(zones):
        mask = zones == zone
        idx = pd.DatetimeIndex(naive_local[mask]).tz_localize(
            str(zone), ambiguous=np.zeros(int(mask.sum()), dtype=bool),
            nonexistent="shift_forward")
        out[mask] = idx.tz_convert("UTC").tz_localize(None).as_unit("ns").values
    return out


def utc_to_local(utc_naive: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """UTC datetime64 values (naive) → naive local wall-clock datetime64[ns] per row's zone.

    UTC offsets only change on whole UTC hours (true for every US and Brazilian zone),
    so the offset is looked up once per distinct (zone, UTC hour) and broadcast: a few
    thousand timezone conversions instead of millions.
    """
    utc = np.asarray(utc_naive).astype("datetime64[ns]")
    if len(utc) <= _FEW:  # a refresh's or a batch's instants: cached offsets, no pandas
        return utc + np.array([_offset_ns(ns, str(z)) for ns, z in zip(
            utc.astype(np.int64).tolist(), zones, strict=True)],
            dtype=np.int64).astype("timedelta64[ns]")
    hours = utc.astype("datetime64[h]")
    zone_codes, zone_names = pd.factorize(np.asarray(zones, dtype=object))
    hour_codes, hour_values = pd.factorize(hours.astype(np.int64))
    pair = zone_codes.astype(np.int64) * (len(hour_values) + 1) + hour_codes
    uniq, inverse = np.unique(pair, return_inverse=True)
    u_zone = uniq // (len(hour_values) + 1)
    u_hour = hour_values[uniq % (len(hour_values) + 1)].astype("datetime64[h]")
    offsets = np.empty(len(uniq), dtype="timedelta64[ns]")
    for z, name in enumerate(zone_names):
        mask = u_zone == z
        idx = pd.DatetimeIndex(u_hour[mask].astype("datetime64[ns]")).tz_localize("UTC")
        local = idx.tz_convert(str(name)).tz_localize(None).as_unit("ns").values
        offsets[mask] = local - u_hour[mask].astype("datetime64[ns]")
    return utc + offsets[inverse]


# Up to this many instants, offsets come from a cache of (zone, UTC hour) → offset, filled
# with zoneinfo: cheaper than pandas' per-zone set-up (a refresh batch has a few distinct
# zones and hours); beyond it, pandas converts each zone's distinct hours at once.
_FEW = 4096
_HOUR_NS = 3_600_000_000_000
_NAT = int(np.iinfo(np.int64).min)  # NaT as int64
_OFFSETS: dict[tuple[str, int], int | None] = {}
_OFFSETS_MAX = 100_000


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset_ns(utc_ns: int, zone: str) -> int:
    """The UTC offset (ns) of ``zone`` at one naive-UTC instant in epoch ns (zero for NaT).
    An hour with no offset change in it is looked up once; one with a change (zones whose
    clocks change off the whole UTC hour) per instant."""
    if utc_ns == _NAT:
        return 0
    hour = utc_ns // _HOUR_NS
    key = (zone, hour)
    offset = _OFFSETS.get(key, -1)
    if offset == -1:
        start, end = (_utc_offset_s(hour * 3600 + s, zone) for s in (0, 3599))
        offset = start * 1_000_000_000 if start == end else None
        if len(_OFFSETS) >= _OFFSETS_MAX:
            _OFFSETS.clear()
        _OFFSETS[key] = offset
    if offset is None:
        return _utc_offset_s(utc_ns // 1_000_000_000, zone) * 1_000_000_000
    return offset


def _utc_offset_s(seconds: int, zone: str) -> int:
    """The UTC offset of ``zone`` at epoch ``seconds``, in whole seconds."""
    offset = datetime.fromtimestamp(seconds, _zone(zone)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def holidays_within(days: np.ndarray, horizon: int, country: str = "US") -> np.ndarray:
    """Number of holidays in ``[day, day + horizon)`` for each datetime64[D] ``day``."""
    hol = holiday_dates(country)
    lo = np.searchsorted(hol, days, side="left")
    hi = np.searchsorted(hol, days + np.timedelta64(horizon, "D"), side="left")
    return (hi - lo).astype(np.int16)


def is_peak_season(days: np.ndarray) -> np.ndarray:
    """True from 20 November to 31 December: the parcel networks' peak."""
    month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    return (month == 12) | ((month == 11) & (dom >= 20))


def _to_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value))
