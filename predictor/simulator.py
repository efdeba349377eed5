"""A documented generative model of one shop's shipments, for training and judging ETAs.

The model, in the order the simulator draws it (all draws from one seeded numpy
generator, so a seed gives the same history byte for byte):

1. **Orders.** ``n_shipments`` orders, one shipment each, placed uniformly over
   ``[start, start + days)``. Customers get a name, e-mail, a valid US phone number,
   a locale (en 70 %, es 15 %, pt-BR 10 %, de 5 %) and the timezone of their ZIP.
2. **Lanes.** Four warehouses (Secaucus NJ, Chicago IL, Coppell TX, Ontario CA) ship to
   a pool of 4,000 real US ZIP codes; each order leaves from the nearest warehouse 80 %
   of the time and a random one otherwise. Distance is the great-circle distance.
3. **Carrier and service.** Carrier shares ups 30 %, usps 30 %, fedex 25 %, dhl 8 %,
   ontrac 7 % (OnTrac only serves western lanes out of Ontario CA; elsewhere it becomes
   usps). Each carrier has its own mix of economy / ground / express.
4. **Handover lag.** The label is created 0.3 h + Exp(8 h) after the order. The carrier
   picks up at 17:00–20:00 origin time on the label's day if the label exists before
   15:00 on a business day, otherwise on the next business day; 8 % of pickups slip one
   more business day. No pickups on Sundays or US federal holidays.
5. **Transit, in business days.** The latent median is
   ``mu = (a_s + b_s * km / 1000) * carrier * carrier_service * lane * carrier_state``
   where ``a_s, b_s`` depend on the service level, ``carrier`` and ``carrier_service``
   are fixed speed factors, and ``lane`` / ``carrier_state`` are seeded log-normal
   effects (sd 8 % / 6 %) per origin→state lane and per carrier×state. Two multipliers
   follow: **peak season** (handover 20 Nov–31 Dec: ramps up to
   ``1 + peak_s * carrier_peak`` by 10 Dec, half of it after 24 Dec) and **regional
   disruptions** (Poisson(days/15) storms, each hitting one destination state for 3–7
   days with a 1.3–1.8x slowdown for parcels handed over from 2 days before the storm to
   its end). Transit ``T = mu_total * exp(sigma_s * Z)``, Z ~ N(0, 1); the parcel is
   delivered ``max(min_s, round(T))`` business days after pickup (no Sunday or holiday
   deliveries) at a local hour ~ N(10.5, 1) for express and N(15, 2.5) otherwise.
6. **Incidents.** 4 % of parcels get an ``exception`` scan at a hub (weather, address,
   damage) that adds 1–3 business days; 3 % get a ``delivery_attempted`` and are
   delivered the next business day; 0.4 % are lost after their first hub (no delivery);
   0.3 % are returned to sender; 0.7 % never get handed over (label only, half of them
   cancelled three days later).
7. **Scans.** ``label_created`` (warehouse) → ``in_transit`` origin scan at pickup →
   one ``in_transit`` hub scan per leg (1–4 legs by distance, hub nearest the straight
   line) → ``in_transit`` arrival at the destination facility early on delivery day →
   ``out_for_delivery`` 07:00–09:00 local → ``delivered``.
8. **Promise.** The shop promises the carrier's published standard,
   ``ceil(a_s + b_s * km / 1000)`` business days (plus the usual carrier factor, no
   peak or storm allowance) after the expected pickup: right most of the year, wrong in
   peak.

9. **The carrier's own estimate.** At the first scan (pickup) the carrier publishes an
   estimated delivery date (EDD) for ``CARRIER_ESTIMATE_SHARE`` (85 %) of the parcels it
   picks up: its nominal transit for the service and distance,
   ``max(min_s, round((a_s + b_s * km / 1000) * carrier * carrier_service))`` business
   days after the actual pickup day (so, unlike the promise, it knows a slipped pickup),
   but nothing of lanes, peak season, storms or incidents. It is a local calendar date
   (``carrier_estimated_delivery``) given at ``carrier_estimate_as_of`` (the pickup scan);
   parcels never picked up, and 15 % of the others, have none. Drawn from a generator of
   its own, so the rest of a seed's history is the same with or without it.

10. **Regime change** (optional, off by default). ``regime_change=(carrier, day, factor)``
   multiplies the latent transit of every parcel of ``carrier`` handed over on or after
   ``start + day`` by ``factor``: the carrier's network changes for good mid-history
   (a lost contract, a new hub) while its published standard, the shop's promise and
   its own estimate stay as they were. It draws nothing from the generator, so every
   other parcel, and the whole history when it is off, is the same for the same seed.

The **oracle** columns keep the latent truth a perfect model of this world would know:
``oracle_handover_at``, ``oracle_transit_bdays`` (``mu_total``), ``oracle_sigma``,
``oracle_min_bdays``, ``oracle_delivery_hour`` and ``oracle_delivery_hour_sd``.
See :mod:`predictor.oracle` for how they become a quantile forecast at any as-of time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from predictor.calendar import busday_calendar, local_to_utc, utc_to_local
from predictor.lanes import STATE_TIMEZONES, haversine_km, zip_table
from predictor.sim_events import build_events
from predictor.sim_people import build_orders

CARRIERS = ("ups", "usps", "fedex", "dhl", "ontrac")
CARRIER_SHARE = (0.30, 0.30, 0.25, 0.08, 0.07)
SERVICES = ("economy", "ground", "express")
# P(service | carrier), columns in SERVICES order.
SERVICE_MIX = {
    "ups": (0.15, 0.65, 0.20), "usps": (0.50, 0.40, 0.10), "fedex": (0.10, 0.60, 0.30),
    "dhl": (0.70, 0.00, 0.30), "ontrac": (0.00, 0.90, 0.10),
}
# Per service: intercept a_s, slope b_s per 1000 km, sigma_s, min business days,
# median local delivery hour, its sd, peak sensitivity peak_s.
SERVICE_PARAMS = {
    "economy": (1.8, 1.15, 0.30, 2, 15.5, 2.5, 0.40),
    "ground": (1.0, 0.85, 0.22, 1, 15.0, 2.5, 0.35),
    "express": (0.9, 0.08, 0.15, 1, 10.5, 1.0, 0.15),
}
CARRIER_SPEED = {"ups": 1.00, "fedex": 0.96, "usps": 1.06, "dhl": 1.18, "ontrac": 0.92}
CARRIER_PEAK = {"ups": 1.0, "fedex": 0.9, "usps": 1.3, "dhl": 1.4, "ontrac": 1.1}
CARRIER_SERVICE_SPEED = {("usps", "economy"): 1.12, ("fedex", "express"): 0.95,
                         ("dhl", "express"): 1.05, ("ups", "economy"): 0.95}
WAREHOUSES = ("07094", "60638", "75019", "91761")
CARRIER_ESTIMATE_SHARE = 0.85
WESTERN_STATES = frozenset({"CA", "OR", "WA", "NV", "AZ", "UT", "ID", "CO", "NM"})
N_DESTINATIONS = 4000


@dataclass(frozen=True)
class SimulatedHistory:
    """A simulated shop history: orders, shipments (with oracle columns) and scans."""

    orders: pd.DataFrame
    shipments: pd.DataFrame
    events: pd.DataFrame
    seed: int


def simulate(n_shipments: int, days: int, start: datetime, seed: int, *,
             regime_change: tuple[str, int, float] | None = None) -> SimulatedHistory:
    """Simulate ``n_shipments`` orders placed over ``days`` days from ``start`` (aware UTC).

    Deterministic for a given ``seed``. See the module docstring for the model
    (``regime_change``: item 10).
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    if n_shipments <= 0 or days <= 0:
        raise ValueError("n_shipments and days must be positive")
    rng = np.random.default_rng(seed)
    n = n_shipments
    zips = zip_table()
    # The 50 states and DC only: Pacific territories sit across the date line and would
    # need their own carrier model.
    pool_codes = np.array(sorted(z for z, info in zips.items()
                                 if info.state in STATE_TIMEZONES and info.state != "PR"))
    dest_zip = pool_codes[rng.choice(len(pool_codes), N_DESTINATIONS, replace=False)]
    dest_zip = dest_zip[rng.integers(0, N_DESTINATIONS, n)]
    d_state = np.array([zips[z].state for z in dest_zip], dtype=object)
    d_lat = np.array([zips[z].lat for z in dest_zip])
    d_lon = np.array([zips[z].lon for z in dest_zip])
    d_tz = np.array([zips[z].timezone for z in dest_zip], dtype=object)

    # Origins: nearest warehouse mostly, a random one otherwise (stock-outs, splits).
    w_lat = np.array([zips[w].lat for w in WAREHOUSES])
    w_lon = np.array([zips[w].lon for w in WAREHOUSES])
    dist_all = haversine_km(d_lat[:, None], d_lon[:, None], w_lat[None, :], w_lon[None, :])
    wh = np.where(rng.random(n) < 0.8, dist_all.argmin(axis=1),
                  rng.integers(0, len(WAREHOUSES), n))
    origin_zip = np.array(WAREHOUSES)[wh]
    o_tz = np.array([zips[w].timezone for w in WAREHOUSES], dtype=object)[wh]
    km = dist_all[np.arange(n), wh]

    carrier_idx = rng.choice(len(CARRIERS), n, p=CARRIER_SHARE)
    ontrac = CARRIERS.index("ontrac")
    western = np.isin(d_state, list(WESTERN_STATES)) & (origin_zip == "91761")
    carrier_idx[(carrier_idx == ontrac) & ~western] = CARRIERS.index("usps")
    carrier = np.array(CARRIERS)[carrier_idx]
    u = rng.random(n)
    cum = np.cumsum(np.array([SERVICE_MIX[c] for c in CARRIERS]), axis=1)[carrier_idx]
    service_idx = (u[:, None] > cum).sum(axis=1).clip(0, 2)
    service = np.array(SERVICES)[service_idx]
    sp = np.array([SERVICE_PARAMS[s] for s in SERVICES])[service_idx]
    a_s, b_s, sigma, min_days, hour_mu, hour_sd, peak_s = sp.T

    # Timeline: order → label → pickup (handover).
    start64 = pd.Timestamp(start).tz_convert("UTC").tz_localize(None).as_unit("ns").to_datetime64()
    placed = start64 + (rng.random(n) * days * 86400e9).astype("timedelta64[ns]")
    label = placed + ((0.3 + rng.exponential(8.0, n)) * 3600e9).astype("timedelta64[ns]")
    cal = busday_calendar("US")
    label_local = utc_to_local(label, o_tz)
    label_day = label_local.astype("datetime64[D]")
    label_hour = (label_local - label_day).astype("timedelta64[m]").astype(np.int64) / 60
    late = (label_hour >= 15) & np.is_busday(label_day, busdaycal=cal)
    expected_pickup = np.busday_offset(label_day, late.astype(np.int64), roll="forward",
                                       busdaycal=cal)
    slip = (rng.random(n) < 0.08).astype(np.int64)
    pickup_day = np.busday_offset(expected_pickup, slip, busdaycal=cal)
    pickup_local = pickup_day + ((17 + 3 * rng.random(n)) * 3600e9).astype("timedelta64[ns]")
    handover = local_to_utc(pickup_local, o_tz)

    # Latent transit: distance-driven mean with carrier, lane and state effects.
    lane_ids, lane_inv = np.unique(np.char.add(origin_zip.astype(str), d_state.astype(str)),
                                   return_inverse=True)
    lane_eff = np.exp(rng.normal(0, 0.08, len(lane_ids)))[lane_inv]
    cs_ids, cs_inv = np.unique(np.char.add(carrier.astype(str), d_state.astype(str)),
                               return_inverse=True)
    cs_eff = np.exp(rng.normal(0, 0.06, len(cs_ids)))[cs_inv]
    speed = np.array([CARRIER_SPEED[c] for c in CARRIERS])[carrier_idx]
    cs_speed = np.array([CARRIER_SERVICE_SPEED.get((c, s), 1.0)
                         for c, s in zip(carrier, service, strict=True)])
    base = (a_s + b_s * km / 1000.0) * speed * cs_speed
    mu = base * lane_eff * cs_eff * _peak_multiplier(pickup_day, peak_s, carrier_idx)
    mu = mu * _storm_multiplier(rng, pickup_day, d_state, start64, days)
    if regime_change is not None:
        changed, from_day, factor = regime_change
        if changed not in CARRIERS:
            raise ValueError(f"regime_change: unknown carrier {changed!r}")
        since = start64.astype("datetime64[D]") + int(from_day)
        mu = np.where((carrier == changed) & (pickup_day >= since), mu * float(factor), mu)
    z = rng.normal(size=n)
    transit = mu * np.exp(sigma * z)
    bdays = np.maximum(min_days, np.round(transit)).astype(np.int64)

    # Incidents (decided up front so scans and delivery agree).
    r = rng.random(n)
    never_shipped = r < 0.007
    lost = (r >= 0.007) & (r < 0.011)
    returned = (r >= 0.011) & (r < 0.014)
    exception = (rng.random(n) < 0.04) & ~never_shipped & ~lost
    exception_delay = np.where(exception, rng.integers(1, 4, n), 0)
    attempted = (rng.random(n) < 0.03) & ~never_shipped & ~lost & ~returned

    delivery_day = np.busday_offset(pickup_day, bdays + exception_delay, roll="forward",
                                    busdaycal=cal)
    hour = np.clip(rng.normal(hour_mu, hour_sd), 8.0, 20.5)
    attempt_local = delivery_day + (hour * 3600e9).astype("timedelta64[ns]")
    final_day = np.where(attempted, np.busday_offset(delivery_day, 1, busdaycal=cal),
                         delivery_day)
    final_hour = np.where(attempted, np.clip(rng.normal(12.0, 2.0, n), 9, 19), hour)
    delivered_local = final_day + (final_hour * 3600e9).astype("timedelta64[ns]")
    delivered = local_to_utc(delivered_local, d_tz)
    attempt_at = local_to_utc(attempt_local, d_tz)

    # The shop's promise: published standard from the expected pickup, no peak allowance.
    published = np.ceil((a_s + b_s * km / 1000.0) * speed).astype(np.int64)
    promised = np.busday_offset(expected_pickup, np.maximum(published, min_days.astype(int)),
                                busdaycal=cal)

    # The carrier's EDD at pickup: nominal transit from the actual pickup day (item 9).
    has_estimate = ~never_shipped & (
        np.random.default_rng((seed, 6)).random(n) < CARRIER_ESTIMATE_SHARE)
    nominal = np.maximum(min_days, np.round(base)).astype(np.int64)
    estimate_day = np.busday_offset(pickup_day, nominal, roll="forward", busdaycal=cal)

    no_delivery = never_shipped | lost | returned
    frame = pd.DataFrame({
        "shipment_id": [f"shp_{seed}_{i:07d}" for i in range(n)],
        "order_id": [f"ord_{seed}_{i:07d}" for i in range(n)],
        "carrier": carrier, "service_level": service,
        "tracking_number": _tracking_numbers(rng, carrier),
        "origin_postal_code": origin_zip, "origin_country": "US",
        "destination_postal_code": dest_zip, "destination_country": "US",
        "weight_grams": np.round(rng.lognormal(6.8, 0.8, n)).astype(np.int64),
        "promised_delivery_date": pd.Series(promised).dt.date,
        "carrier_estimated_delivery": pd.Series(
            np.where(has_estimate, estimate_day, np.datetime64("NaT"))).dt.date,
        "carrier_estimate_as_of": _utc(np.where(has_estimate, handover, np.datetime64("NaT"))),
        "label_created_at": _utc(label),
        "shipped_at": _utc(np.where(never_shipped, np.datetime64("NaT"), handover)),
        "delivered_at": _utc(np.where(no_delivery, np.datetime64("NaT"), delivered)),
        "oracle_handover_at": _utc(np.where(never_shipped, np.datetime64("NaT"), handover)),
        "oracle_transit_bdays": mu, "oracle_sigma": sigma, "oracle_min_bdays": min_days,
        "oracle_delivery_hour": hour_mu, "oracle_delivery_hour_sd": hour_sd,
    })
    for col in ("carrier", "service_level", "origin_postal_code", "origin_country",
                "destination_country"):
        frame[col] = frame[col].astype("category")
    orders = build_orders(rng, frame["order_id"], _utc(placed), d_tz)
    events = build_events(
        rng, frame, km=km, o_tz=o_tz, d_tz=d_tz, delivery_day=delivery_day,
        attempt_at=attempt_at, handover=handover, label=label, delivered=delivered,
        never_shipped=never_shipped, lost=lost, returned=returned, exception=exception,
        attempted=attempted)
    return SimulatedHistory(orders=orders, shipments=frame, events=events, seed=seed)


def _peak_multiplier(day: np.ndarray, peak_s: np.ndarray, carrier_idx: np.ndarray) -> np.ndarray:
    """1 outside peak; ramps from 20 Nov to full strength on 10 Dec; halves after 24 Dec."""
    year_start = day.astype("datetime64[Y]")
    doy = (day - year_start).astype(np.int64)  # 0-based day of year
    leap = (year_start.astype(np.int64) + 1970) % 4 == 0
    nov20 = 323 + leap
    dec10 = nov20 + 20
    dec24 = dec10 + 14
    ramp = np.clip((doy - nov20) / (dec10 - nov20), 0.0, 1.0)
    ramp = np.where(doy > dec24, 0.5, ramp)
    carrier_peak = np.array([CARRIER_PEAK[c] for c in CARRIERS])[carrier_idx]
    return 1.0 + ramp * peak_s * carrier_peak


def _storm_multiplier(rng: np.random.Generator, day: np.ndarray, state: np.ndarray,
                      start64: np.datetime64, days: int) -> np.ndarray:
    """Regional disruptions: a few storms, each slowing one destination state for days."""
    mult = np.ones(len(day))
    n_storms = rng.poisson(days / 15)
    states, counts = np.unique(state.astype(str), return_counts=True)
    start_day = start64.astype("datetime64[D]")
    for _ in range(n_storms):
        hit = states[rng.choice(len(states), p=counts / counts.sum())]
        begin = start_day + int(rng.integers(0, days))
        end = begin + int(rng.integers(3, 8))
        factor = rng.uniform(1.3, 1.8)
        mask = (state == hit) & (day >= begin - 2) & (day < end)
        mult[mask] *= factor
    return mult


def _tracking_numbers(rng: np.random.Generator, carrier: np.ndarray) -> list[str]:
    """Carrier-shaped, unique tracking numbers (unique thanks to the row index)."""
    salt = rng.integers(0, 10**6, len(carrier))
    fmt = {"ups": "1Z{s:06d}{i:010d}", "usps": "9400{s:06d}{i:012d}",
           "fedex": "{s:04d}{i:08d}", "dhl": "JD{s:06d}{i:010d}", "ontrac": "C{s:04d}{i:010d}"}
    return [fmt[c].format(s=s % 10**4 if c in ("fedex", "ontrac") else s, i=i)
            for i, (c, s) in enumerate(zip(carrier, salt, strict=True))]


def _utc(values: np.ndarray) -> pd.Series:
    """Naive UTC datetime64 → aware Series at microsecond precision (what PostgreSQL and
    Python datetimes hold, so values round-trip exactly)."""
    return pd.Series(values.astype("datetime64[us]")).dt.tz_localize("UTC")
