"""US ZIP geography: coordinates, timezones, distances and lane keys (offline).

``zipcodes`` ships its data inside the wheel, but each lookup scans a list; we build one
dict on first use (~1 s) and answer every later lookup from it. The package's own list of
records (42,789 dicts, ~140 MB) is read without being kept: only our compact table stays.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import zipcodes

EARTH_RADIUS_KM = 6371.0088
UNKNOWN = "unknown"

# Best-effort timezone per state, used when a ZIP record has none. States that straddle
# two zones get the zone where most people live.
STATE_TIMEZONES: dict[str, str] = {
    "AL": "America/Chicago", "AK": "America/Anchorage", "AZ": "America/Phoenix",
    "AR": "America/Chicago", "CA": "America/Los_Angeles", "CO": "America/Denver",
    "CT": "America/New_York", "DE": "America/New_York", "DC": "America/New_York",
    "FL": "America/New_York", "GA": "America/New_York", "HI": "Pacific/Honolulu",
    "ID": "America/Boise", "IL": "America/Chicago", "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago", "KS": "America/Chicago", "KY": "America/New_York",
    "LA": "America/Chicago", "ME": "America/New_York", "MD": "America/New_York",
    "MA": "America/New_York", "MI": "America/Detroit", "MN": "America/Chicago",
    "MS": "America/Chicago", "MO": "America/Chicago", "MT": "America/Denver",
    "NE": "America/Chicago", "NV": "America/Los_Angeles", "NH": "America/New_York",
    "NJ": "America/New_York", "NM": "America/Denver", "NY": "America/New_York",
    "NC": "America/New_York", "ND": "America/Chicago", "OH": "America/New_York",
    "OK": "America/Chicago", "OR": "America/Los_Angeles", "PA": "America/New_York",
    "RI": "America/New_York", "SC": "America/New_York", "SD": "America/Chicago",
    "TN": "America/Chicago", "TX": "America/Chicago", "UT": "America/Denver",
    "VT": "America/New_York", "VA": "America/New_York", "WA": "America/Los_Angeles",
    "WV": "America/New_York", "WI": "America/Chicago", "WY": "America/Denver",
    "PR": "America/Puerto_Rico",
}
COUNTRY_TIMEZONES: dict[str, str] = {"BR": "America/Sao_Paulo", "US": "America/New_York"}
# Distance bands (km) used in a lane key when the origin prefix is not informative.
DISTANCE_BANDS_KM = (300.0, 800.0, 1500.0, 2500.0)


@dataclass(frozen=True, slots=True)
class ZipInfo:
    """What we know about one 5-digit US ZIP code."""

    zip_code: str
    city: str
    state: str
    lat: float
    lon: float
    timezone: str


@lru_cache(maxsize=1)
def zip_table() -> dict[str, ZipInfo]:
    """All active ZIP codes with coordinates, keyed by 5-digit code (built once).

    Memory: the package's records are copied into plain arrays and dropped before the
    table's objects are made, so those do not end up scattered among the freed records
    (which would keep ~140 MB of the interpreter's memory pages alive for good)."""
    columns = _zip_columns()
    gc.collect()
    return {z: ZipInfo(z, city, state, lat, lon, tz) for z, city, state, lat, lon, tz in zip(
        *(columns[k].tolist() for k in ("zip", "city", "state", "lat", "lon", "tz")),
        strict=True)}


def zip_records() -> list[dict[str, Any]]:
    """Every record of the zipcodes package, read fresh: ``zipcodes.list_all()`` would keep
    all 42k of them cached in the module for good (~140 MB). Copy what you need into arrays
    and drop the list before making long-lived objects (see zip_table)."""
    native: Any = getattr(zipcodes, "_zipcodes", zipcodes)  # the reader behind list_all
    records: list[dict[str, Any]] = native.list_all()
    return records


def _zip_columns() -> dict[str, np.ndarray]:
    """zipcodes' records with coordinates as fixed-width arrays (no Python objects kept)."""
    kept = [r for r in zip_records() if r.get("lat") and r.get("long")]
    out = {"zip": np.array([r["zip_code"] for r in kept], dtype=str),
           "city": np.array([r["city"].title() for r in kept], dtype=str),
           "state": np.array([r["state"] for r in kept], dtype=str),
           "lat": np.array([float(r["lat"]) for r in kept], dtype=float),
           "lon": np.array([float(r["long"]) for r in kept], dtype=float),
           "tz": np.array([r.get("timezone") or STATE_TIMEZONES.get(r["state"],
                                                                     "America/New_York")
                           for r in kept], dtype=str)}
    return out


def normalize_zip(postal_code: object) -> str | None:
    """'02139-4307' / 2139 / ' 02139 ' → '02139'; None when it cannot be a US ZIP."""
    if postal_code is None or (isinstance(postal_code, float) and math.isnan(postal_code)):
        return None
    text = str(postal_code).strip().split("-")[0]
    if not text.isdigit() or len(text) > 5:
        return None
    return text.zfill(5)


def zip_info(postal_code: object) -> ZipInfo | None:
    """Look a ZIP up; None for unknown or non-US codes."""
    code = normalize_zip(postal_code)
    return zip_table().get(code) if code else None


def zip_timezone(postal_code: object, country: str | None = "US") -> str:
    """Best-effort IANA timezone for a destination (US ZIP → state zone; else by country)."""
    if country in (None, "US"):
        info = zip_info(postal_code)
        if info is not None:
            return info.timezone
    return COUNTRY_TIMEZONES.get(str(country), "UTC")


def haversine_km(lat1: np.ndarray | float, lon1: np.ndarray | float,
                 lat2: np.ndarray | float, lon2: np.ndarray | float) -> np.ndarray:
    """Great-circle distance in km (vectorised; NaN in → NaN out)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)))


def distance_km(origin: object, destination: object) -> float:
    """Distance between two US ZIPs; NaN when either is unknown."""
    a, b = zip_info(origin), zip_info(destination)
    if a is None or b is None:
        return math.nan
    return float(haversine_km(a.lat, a.lon, b.lat, b.lon))


def lane_key(origin: object, destination: object) -> str:
    """Lane = origin 3-digit ZIP prefix → destination state, e.g. '606>CA'."""
    o, d = normalize_zip(origin), zip_info(destination)
    if o is None or d is None:
        return UNKNOWN
    return f"{o[:3]}>{d.state}"


def distance_band(km: float) -> str:
    """Coarse distance band name, e.g. '<300km', '800-1500km', '>2500km'."""
    if math.isnan(km):
        return UNKNOWN
    edges = DISTANCE_BANDS_KM
    if km < edges[0]:
        return f"<{edges[0]:.0f}km"
    for lo, hi in zip(edges, edges[1:], strict=False):
        if km < hi:
            return f"{lo:.0f}-{hi:.0f}km"
    return f">{edges[-1]:.0f}km"


@lru_cache(maxsize=200_000)
def lane_attributes(origin: object, destination: object) -> tuple[str, str, float]:
    """(lane key, destination state, km) for one pair; cached because shops reuse lanes."""
    info = zip_info(destination)
    return (lane_key(origin, destination), info.state if info else UNKNOWN,
            distance_km(origin, destination))


def lane_frame(origins: pd.Series, destinations: pd.Series) -> pd.DataFrame:
    """Vectorised lane attributes: lane, destination_state, distance_km (NaN if unknown).

    Only unique (origin, destination) pairs are looked up, so a million rows over a few
    thousand lanes costs a few thousand dict lookups.
    """
    o_codes, o_uniq = pd.factorize(origins.astype(object).to_numpy())
    d_codes, d_uniq = pd.factorize(destinations.astype(object).to_numpy())
    o_uniq = np.append(np.asarray(o_uniq, dtype=object), [None])  # code -1 = missing
    d_uniq = np.append(np.asarray(d_uniq, dtype=object), [None])
    o_codes = np.where(o_codes < 0, len(o_uniq) - 1, o_codes)
    d_codes = np.where(d_codes < 0, len(d_uniq) - 1, d_codes)
    codes, pair_ids = pd.factorize(o_codes.astype(np.int64) * len(d_uniq) + d_codes)
    uniques = [(o_uniq[p // len(d_uniq)], d_uniq[p % len(d_uniq)]) for p in pair_ids]
    lanes, states, dists = [], [], []
    for o, d in uniques:
        lane, state, km = lane_attributes(o, d)
        lanes.append(lane)
        states.append(state)
        dists.append(km)
    lanes_arr = np.asarray(lanes, dtype=object)
    states_arr = np.asarray(states, dtype=object)
    dist_arr = np.asarray(dists, dtype=np.float64)
    return pd.DataFrame({"lane": lanes_arr[codes], "destination_state": states_arr[codes],
                         "distance_km": dist_arr[codes]}, index=origins.index)
