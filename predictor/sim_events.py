"""Scan sequences for simulated shipments (see :mod:`predictor.simulator` for the model).

Events are built as flat numpy arrays per kind of scan and concatenated once, so a
million shipments (~8 million scans) take seconds. Repeated text columns are pandas
categoricals to keep memory low.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictor.calendar import local_to_utc, utc_to_local
from predictor.lanes import haversine_km, zip_table

# Sort hubs of the US parcel networks; a leg's scan happens at the hub nearest the
# straight line between origin and destination.
HUBS = ("40209", "38118", "46241", "60638", "75019", "30349", "80239", "84104", "91761",
        "94621", "98108", "85043", "64153", "43217", "17111", "32218", "28214", "55450",
        "77032", "07114")
EXCEPTIONS = ("Weather delay", "Address information needed", "Package damaged, repacked",
              "Delayed: missed connection")
EVENT_COLUMNS = ("carrier", "tracking_number", "event_id", "status", "occurred_at",
                 "description", "location_city", "location_region",
                 "location_postal_code", "location_country")
_HOUR = 3600e9


def build_events(rng: np.random.Generator, shipments: pd.DataFrame, *, km: np.ndarray,
                 o_tz: np.ndarray, d_tz: np.ndarray, delivery_day: np.ndarray,
                 attempt_at: np.ndarray, handover: np.ndarray, label: np.ndarray,
                 delivered: np.ndarray, never_shipped: np.ndarray, lost: np.ndarray,
                 returned: np.ndarray, exception: np.ndarray,
                 attempted: np.ndarray) -> pd.DataFrame:
    """Turn the simulator's per-shipment timeline into an ordered scan table."""
    n = len(shipments)
    zips = zip_table()
    origin = shipments["origin_postal_code"].astype(str).to_numpy()
    dest = shipments["destination_postal_code"].astype(str).to_numpy()
    loc_codes = np.array(sorted(set(HUBS) | set(np.unique(origin)) | set(np.unique(dest))))
    o_loc = np.searchsorted(loc_codes, origin)
    d_loc = np.searchsorted(loc_codes, dest)
    hub_loc = np.searchsorted(loc_codes, np.array(HUBS))
    shipped = ~never_shipped
    rows: list[np.ndarray] = []
    times: list[np.ndarray] = []
    status: list[np.ndarray] = []
    desc: list[np.ndarray] = []
    locs: list[np.ndarray] = []

    def add(mask: np.ndarray, when: np.ndarray, st: str, text: str | np.ndarray,
            where: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        rows.append(idx)
        times.append(when[idx].astype("datetime64[ns]"))
        status.append(np.full(len(idx), st, dtype=object))
        desc.append(np.full(len(idx), text, dtype=object) if isinstance(text, str)
                    else text[idx])
        locs.append(where[idx])

    add(np.ones(n, bool), label, "label_created", "Shipping label created", o_loc)
    add(shipped, handover, "in_transit", "Picked up by carrier", o_loc)

    # Destination facility arrival early on the first delivery day anchors the hub legs.
    arrive_local = delivery_day + ((3.0 + 1.5 * rng.random(n)) * _HOUR).astype(
        "timedelta64[ns]")
    arrive = local_to_utc(arrive_local, d_tz)
    span = (arrive - handover).astype(np.int64)
    legs = 1 + (km > 600).astype(int) + (km > 1500) + (km > 2800)
    o_lat = np.array([zips[z].lat for z in origin])
    o_lon = np.array([zips[z].lon for z in origin])
    d_lat = np.array([zips[z].lat for z in dest])
    d_lon = np.array([zips[z].lon for z in dest])
    h_lat = np.array([zips[z].lat for z in HUBS])
    h_lon = np.array([zips[z].lon for z in HUBS])
    first_hub = np.zeros(n, dtype=np.int64)
    first_hub_at = handover.copy()
    for k in range(1, 5):
        mask = shipped & (legs >= k) & ~(lost & (k > 1))
        frac = (k + rng.uniform(-0.25, 0.25, n)) / (legs + 1)
        when = handover + (span * frac).astype("timedelta64[ns]")
        lat = o_lat + frac * (d_lat - o_lat)
        lon = o_lon + frac * (d_lon - o_lon)
        where = hub_loc[_nearest(lat, lon, h_lat, h_lon)]
        add(mask, when, "in_transit", "Arrived at carrier facility", where)
        if k == 1:
            first_hub, first_hub_at = where, when

    exc_text = np.array(EXCEPTIONS, dtype=object)[rng.integers(0, len(EXCEPTIONS), n)]
    exc_at = first_hub_at + ((1 + 2 * rng.random(n)) * _HOUR).astype("timedelta64[ns]")
    add(exception, exc_at, "exception", exc_text, first_hub)

    reaches_door = shipped & ~lost
    add(reaches_door, arrive, "in_transit", "Arrived at local delivery facility", d_loc)
    # Out for delivery between 06:30 and half an hour before the delivery attempt.
    attempt_hour = _local_hour(attempt_at, delivery_day, d_tz)
    ofd_hour = 6.5 + rng.random(n) * np.clip(np.minimum(attempt_hour, 9.5) - 7.0, 0.0, None)
    ofd = local_to_utc(delivery_day + (ofd_hour * _HOUR).astype("timedelta64[ns]"), d_tz)
    add(reaches_door, ofd, "out_for_delivery", "Out for delivery", d_loc)
    add(attempted | returned, attempt_at, "delivery_attempted",
        "Delivery attempted, no one available", d_loc)
    second_ofd = delivered - ((1.0 + 0.5 * rng.random(n)) * _HOUR).astype("timedelta64[ns]")
    add(attempted, second_ofd, "out_for_delivery", "Out for delivery", d_loc)
    add(reaches_door & ~returned, delivered, "delivered", "Delivered", d_loc)
    back = attempt_at + np.full(n, 30 * _HOUR).astype("timedelta64[ns]")
    add(returned, back, "returned_to_sender", "Returned to sender: undeliverable", d_loc)
    cancel = never_shipped & (rng.random(n) < 0.5)
    add(cancel, label + np.timedelta64(3, "D"), "cancelled", "Label cancelled", o_loc)

    return _assemble(shipments, rows, times, status, desc, locs, loc_codes)


def _nearest(lat: np.ndarray, lon: np.ndarray, h_lat: np.ndarray, h_lon: np.ndarray,
             chunk: int = 100_000) -> np.ndarray:
    """Index of the nearest hub per point, in chunks to bound the (n, hubs) temporaries."""
    out = np.empty(len(lat), dtype=np.int64)
    for lo in range(0, len(lat), chunk):
        hi = lo + chunk
        d = haversine_km(lat[lo:hi, None], lon[lo:hi, None], h_lat[None, :], h_lon[None, :])
        out[lo:hi] = d.argmin(axis=1)
    return out


def _local_hour(utc: np.ndarray, day: np.ndarray, zones: np.ndarray) -> np.ndarray:
    local = utc_to_local(utc.astype("datetime64[ns]"), zones)
    return (local - day.astype("datetime64[ns]")).astype(np.int64) / _HOUR


def _assemble(shipments: pd.DataFrame, rows: list[np.ndarray], times: list[np.ndarray],
              status: list[np.ndarray], desc: list[np.ndarray], locs: list[np.ndarray],
              loc_codes: np.ndarray) -> pd.DataFrame:
    row = np.concatenate(rows)
    when = np.concatenate(times)
    # Stable sort by shipment then time keeps same-instant scans in insertion order.
    order = np.lexsort((when, row))
    row, when = row[order], when[order]
    loc = np.concatenate(locs)[order]
    seq = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    tracking = shipments["tracking_number"].to_numpy()
    zips = zip_table()
    carrier = shipments["carrier"]
    return pd.DataFrame({
        "carrier": pd.Categorical.from_codes(carrier.cat.codes.to_numpy()[row],
                                             dtype=carrier.dtype),
        "tracking_number": pd.Categorical.from_codes(row, categories=tracking),
        "event_id": [f"{t}-{s:02d}" for t, s in zip(tracking[row], seq, strict=True)],
        "status": pd.Categorical(np.concatenate(status)[order]),
        "occurred_at": pd.Series(when.astype("datetime64[us]")).dt.tz_localize("UTC"),
        "description": pd.Categorical(np.concatenate(desc)[order]),
        # City names repeat across ZIPs, so they cannot be categories of the ZIP codes.
        "location_city": pd.Categorical(np.array([zips[c].city for c in loc_codes], dtype=object)[loc]),
        "location_region": pd.Categorical(
            np.array([zips[c].state for c in loc_codes], dtype=object)[loc]),
        "location_postal_code": pd.Categorical.from_codes(loc, categories=loc_codes),
        "location_country": pd.Categorical(np.full(len(row), "US", dtype=object)),
    })
