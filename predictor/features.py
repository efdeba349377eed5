"""ETA features: one code path for training snapshots, batch scoring and serving.

Everything funnels through :func:`_feature_arrays`, which takes per-query rows
(shipment attributes + the scan state at the as-of instant) and returns the model's
feature table. Training builds many queries at once (one per moment an ETA was shown),
serving builds one; neither has a private shortcut, so they cannot disagree.

Missing data is normal (the Olist history has no carrier, lane or address): unknown
categoricals become ``"unknown"``, unknown numbers become NaN, and XGBoost routes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.calendar import (
    busday_calendar,
    holidays_within,
    is_peak_season,
    utc_to_local,
)
from predictor.lanes import UNKNOWN, lane_attributes, lane_frame, zip_timezone
from predictor.recent import RecentPerformance
from predictor.spill import ColumnFiles, SpilledTable

CATEGORICAL = ("carrier", "service_level", "lane", "destination_state", "latest_status")
NUMERIC = (
    "distance_km", "promised_lead_bdays", "promise_remaining_bdays", "hours_to_promise",
    "weekday", "local_hour", "holidays_next_7d", "peak_season", "days_into_peak",
    "hours_since_label", "hours_since_handover", "bdays_since_handover", "n_scans",
    "hours_since_last_scan",
    "lane_transit_median_7d", "lane_transit_median_14d", "lane_deliveries_14d",
    "carrier_transit_median_7d", "carrier_transit_median_14d", "state_transit_median_7d",
    "carrier_backlog_days", "lane_backlog_days", "carrier_estimate_hours",
)
FEATURES = CATEGORICAL + NUMERIC
# Recent-performance key families and the windows used for each feature.
_RECENT = (("lane_transit_median_7d", "carrier_lane", 7),
           ("lane_transit_median_14d", "carrier_lane", 14),
           ("carrier_transit_median_7d", "carrier_service", 7),
           ("carrier_transit_median_14d", "carrier_service", 14),
           ("state_transit_median_7d", "state", 7))
STAGES = ("label", "first_scan", "later", "between_scans")
HOLIDAY_COUNTRIES = frozenset({"US", "BR"})
_HOUR_S = 3600.0
# Rows per chunk of snapshot features: each chunk's temporaries take ~0.5 kB a row.
_CHUNK = 100_000
_ID_COLUMNS = ("tracking_number", "shipment_id")
# The shipment columns the features read (all a refresh needs to fetch of a shipment).
SHIPMENT_COLUMNS = ("shipment_id", "carrier", "service_level", "tracking_number",
                     "origin_postal_code", "origin_country", "destination_postal_code",
                     "destination_country", "promised_delivery_date", "label_created_at",
                     "shipped_at", "delivered_at", "carrier_estimated_delivery",
                     "carrier_estimate_as_of")


def shipment_attributes(shipments: pd.DataFrame) -> pd.DataFrame:
    """Static per-shipment attributes the features need (lane, zone, promise, times)."""
    s = shipments.reindex(columns=list(SHIPMENT_COLUMNS))
    out = pd.DataFrame(index=pd.RangeIndex(len(s)))
    out["carrier"] = _category_text(s["carrier"])
    out["service_level"] = _category_text(s["service_level"])
    lanes = lane_frame(s["origin_postal_code"].reset_index(drop=True),
                       s["destination_postal_code"].reset_index(drop=True))
    out["lane"] = lanes["lane"].to_numpy()
    out["destination_state"] = lanes["destination_state"].to_numpy()
    out["distance_km"] = lanes["distance_km"].to_numpy()
    country = s["destination_country"].astype(object).where(
        s["destination_country"].notna(), "US").astype(str).to_numpy()
    out["country"] = np.where(np.isin(country, list(HOLIDAY_COUNTRIES)), country, "US")
    out["timezone"] = _zones(s["destination_postal_code"], country)
    out["label_s"] = _seconds(s["label_created_at"])
    out["shipped_s"] = _seconds(s["shipped_at"])
    out["delivered_s"] = _seconds(s["delivered_at"])
    promised = pd.to_datetime(s["promised_delivery_date"], errors="coerce")
    out["promised_day"] = promised.to_numpy("datetime64[D]")
    estimate = pd.to_datetime(s["carrier_estimated_delivery"], errors="coerce")
    out["estimate_day"] = estimate.to_numpy("datetime64[D]")
    out["estimate_s"] = _seconds(s["carrier_estimate_as_of"])
    # Identifiers (not features: they join scans and name snapshots) stay pandas text,
    # ~20 bytes a shipment, not a Python string each (~75 bytes).
    for c in _ID_COLUMNS:
        out[c] = s[c].astype(str).array
    return out


def recent_performance(shipments: pd.DataFrame,
                       attributes: pd.DataFrame | None = None) -> RecentPerformance:
    """Build :class:`RecentPerformance` from a shipments table (delivered rows count)."""
    a = attributes if attributes is not None else shipment_attributes(shipments)
    transit = (a["delivered_s"] - a["shipped_s"]) / _HOUR_S
    return RecentPerformance(a["delivered_s"].to_numpy(float), transit.to_numpy(float),
                             _recent_key_categories(a),
                             handover_s=a["shipped_s"].to_numpy(float))


def training_snapshots(shipments: pd.DataFrame, events: pd.DataFrame, *,
                       recent: RecentPerformance | None = None,
                       attributes: pd.DataFrame | None = None,
                       censor_at: float | None = None,
                       ) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """As-of snapshots of delivered shipments: (X, hours remaining, meta).

    One row per moment an ETA would have been shown: at label creation, after each
    carrier scan before delivery, and once at a random instant between scans. ``meta``
    has shipment_id, as_of, stage ("label", "first_scan", "later", "between_scans"),
    carrier and delivered_at. ``attributes``: :func:`shipment_attributes` of
    ``shipments`` when the caller already has them.

    ``censor_at`` (epoch seconds): the history as known at that instant, for calibration
    (:mod:`predictor.calibration`): shipments not delivered before it are kept too, with
    snapshots up to it, NaN hours remaining and no delivered_at (a later delivery is the
    future and is ignored).

    Memory: a million shipments give ~6.7 million snapshots. The features are computed
    in chunks written straight into one preallocated float32 array per feature (and
    category codes per categorical), so no chunk list, concatenation or per-row text
    is ever held beside the result.
    """
    X, y, meta = _snapshots(shipments, events, recent, attributes, censor_at, None)
    assert isinstance(X, pd.DataFrame)
    return X, y, meta


def spilled_snapshots(shipments: pd.DataFrame, events: pd.DataFrame, folder: str | Path, *,
                      recent: RecentPerformance | None = None,
                      attributes: pd.DataFrame | None = None,
                      ) -> tuple[SpilledTable, np.ndarray, pd.DataFrame]:
    """:func:`training_snapshots` with the numeric feature columns written to files under
    ``folder`` chunk by chunk as they are computed (:class:`predictor.spill.SpilledTable`):
    the same rows and values, but the table's floats are never all in memory."""
    X, y, meta = _snapshots(shipments, events, recent, attributes, None, Path(folder))
    assert isinstance(X, SpilledTable)
    return X, y, meta


def _snapshots(shipments: pd.DataFrame, events: pd.DataFrame,
               recent: RecentPerformance | None, attributes: pd.DataFrame | None,
               censor_at: float | None, folder: Path | None
               ) -> tuple[pd.DataFrame | SpilledTable, np.ndarray, pd.DataFrame]:
    """:func:`training_snapshots`, the table in memory or (``folder``) spilled."""
    attrs = attributes if attributes is not None else shipment_attributes(shipments)
    recent = recent if recent is not None else recent_performance(shipments, attrs)
    scans = _scan_table(attrs, events)
    label = attrs["label_s"].to_numpy()
    delivered = attrs["delivered_s"].to_numpy()
    if censor_at is None:
        end = delivered
        ok = np.isfinite(delivered) & np.isfinite(label) & (delivered > label)
    else:
        known = np.isfinite(delivered) & (delivered < censor_at)
        delivered = np.where(known, delivered, np.nan)
        end = np.where(known, delivered, float(censor_at))
        ok = np.isfinite(label) & (end > label)
    label_rows = np.flatnonzero(ok)
    ev_row, ev_s, ev_label = scans["row"], scans["s"], scans["is_label"]
    take = ok[ev_row] & ~ev_label & (ev_s < end[ev_row]) & (ev_s >= label[ev_row])
    # "first scan" = the first non-label event of the shipment.
    nonlabel_rank = _rank_within(ev_row, ~ev_label)
    # Serving also refreshes ETAs between scans (batch re-scoring, page views), so each
    # shipment adds one snapshot at a random instant; otherwise "hours since last scan"
    # would be 0 in every training row and meaningless at serving time.
    rng = np.random.default_rng(len(label_rows))
    between = label[label_rows] + rng.random(len(label_rows)) * (
        end[label_rows] - label[label_rows])
    rows = np.concatenate([label_rows, ev_row[take], label_rows])
    as_of = np.concatenate([label[label_rows], ev_s[take], between])
    # Stage codes index STAGES: label, first_scan, later, between_scans.
    stage = np.concatenate([np.zeros(len(label_rows), dtype=np.int8),
                            np.where(nonlabel_rank[take] == 0, 1, 2).astype(np.int8),
                            np.full(len(label_rows), 3, dtype=np.int8)])
    del take, nonlabel_rank, between
    order = np.lexsort((as_of, rows))
    rows, as_of, stage = rows[order], as_of[order], stage[order]
    del order
    X = _feature_table(attrs, scans, rows, as_of, recent, folder)
    del scans
    y = (delivered[rows] - as_of) / _HOUR_S
    carrier_codes, carriers = pd.factorize(attrs["carrier"].to_numpy(), sort=True)
    meta = pd.DataFrame({
        "shipment_id": pd.Categorical.from_codes(rows, categories=attrs["shipment_id"])
        if attrs["shipment_id"].is_unique else attrs["shipment_id"].to_numpy()[rows],
        "as_of": _timestamps(as_of),
        "stage": pd.Categorical.from_codes(stage, categories=list(STAGES)),
        "carrier": pd.Categorical.from_codes(carrier_codes[rows], categories=pd.Index(carriers))
        .remove_unused_categories(),
        "delivered_at": _timestamps(delivered[rows]),
    })
    return X, y.astype(float, copy=False), meta


def _feature_table(attrs: pd.DataFrame, scans: dict[str, np.ndarray], rows: np.ndarray,
                   as_of: np.ndarray, recent: RecentPerformance, folder: Path | None = None
                   ) -> pd.DataFrame | SpilledTable:
    """:func:`_feature_frame` of many queries, chunk by chunk into preallocated columns
    (the same values as one call; chunks only bound the per-column temporaries); with
    ``folder``, the numeric columns are appended to files there instead."""
    n = len(rows)
    a = _attribute_arrays(attrs)
    keys = _recent_key_categories(a)
    files = None if folder is None else ColumnFiles(folder, NUMERIC, np.float32)
    numeric = {} if files is not None else {f: np.empty(n, dtype=np.float32) for f in NUMERIC}
    codes = {f: np.empty(n, dtype=np.int32) for f in CATEGORICAL}
    chunk_categories: dict[str, list[tuple[int, int, pd.Index]]] = {f: [] for f in CATEGORICAL}
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        part = _feature_arrays(a, scans, rows[lo:hi], as_of[lo:hi], recent, keys=keys)
        for f in NUMERIC:
            if files is not None:
                files.append(f, part[f])
            else:
                numeric[f][lo:hi] = part[f]
        for f in CATEGORICAL:
            cat = pd.Categorical(part[f])
            codes[f][lo:hi] = cat.codes
            chunk_categories[f].append((lo, hi, cat.categories))
        del part
    columns: dict[str, object] = {}
    for f in CATEGORICAL:
        # Chunks may differ in categories: one sorted union, each chunk's codes remapped.
        union = pd.Index(sorted({v for _, _, c in chunk_categories[f] for v in c}))
        for lo, hi, cats in chunk_categories[f]:
            lookup = np.append(union.get_indexer(cats), -1)
            codes[f][lo:hi] = lookup[codes[f][lo:hi]]
        columns[f] = pd.Categorical.from_codes(codes.pop(f), categories=union)
    if files is not None:
        return SpilledTable(n, FEATURES, {f: pd.Series(columns[f]) for f in CATEGORICAL},
                            files.close())
    columns.update(numeric)
    # copy=False: the float32 arrays become the frame's columns as they are.
    return pd.DataFrame({f: columns[f] for f in FEATURES}, copy=False)


def current_features(shipments: pd.DataFrame, events: pd.DataFrame, as_of: datetime,
                     recent: RecentPerformance) -> pd.DataFrame:
    """Features of every shipment as of one instant (batch re-scoring)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    attrs = shipment_attributes(shipments)
    scans = _scan_table(attrs, events)
    rows = np.arange(len(attrs))
    t = np.full(len(attrs), pd.Timestamp(as_of).timestamp())
    return _feature_frame(attrs, scans, rows, t, recent)


def serving_features(shipment: Mapping[str, object], events: Sequence[Mapping[str, object]],
                     as_of: datetime, recent: RecentPerformance) -> pd.DataFrame:
    """One-row feature table for one shipment as of ``as_of`` (same path as training)."""
    return _as_frame(serving_row(shipment, events, as_of, recent))


def serving_row(shipment: Mapping[str, object], events: Sequence[Mapping[str, object]],
                as_of: datetime, recent: RecentPerformance) -> dict[str, np.ndarray]:
    """One shipment's features as one-element arrays, for the per-event refresh."""
    return serving_rows([shipment], [events], as_of, recent)


def serving_rows(shipments: Sequence[Mapping[str, object]],
                 events: Sequence[Sequence[Mapping[str, object]]], as_of: datetime,
                 recent: RecentPerformance) -> dict[str, np.ndarray]:
    """Features of a few shipments (each with its own scans) as of one instant, one array
    per feature: what refreshes and checkout quotes score.

    The attributes and scans are read straight from the mappings (no pandas frames:
    those cost ~10 ms even for a single row), then go through the same
    :func:`_feature_arrays` as training; a parity test holds these readers to the
    frame-based ones.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    if len(shipments) != len(events):
        raise ValueError("one list of scans per shipment")
    attrs = _attributes(shipments) if shipments else {}
    timed = [(i, float(_epoch_seconds(e["occurred_at"])), str(e["status"]))
             for i, evs in enumerate(events) for e in evs if e.get("occurred_at") is not None]
    scans = _scans(len(shipments), np.array([t[0] for t in timed], dtype=np.int64),
                   np.array([t[1] for t in timed], dtype=float),
                   np.array([t[2] for t in timed], dtype=object))
    return _feature_arrays(attrs, scans, np.arange(len(shipments), dtype=np.int64),
                           np.full(len(shipments), as_of.timestamp()), recent)


def _attributes(shipments: Sequence[Mapping[str, object]]) -> dict[str, np.ndarray]:
    """:func:`shipment_attributes` of shipment mappings, without pandas: each row's values
    read in one pass, each column built once."""
    rows = [_one_attributes(s) for s in shipments]
    out = {k: np.array([r[k] for r in rows],
                       dtype=float if k.endswith("_s") or k == "distance_km" else object)
           for k in rows[0] if k not in _DAYS}
    for key in _DAYS:
        out[key] = np.array([np.datetime64("NaT") if (day := r[key]) is None
                             else np.datetime64(day, "D") if type(day) is date
                             else pd.Timestamp(day).to_datetime64() for r in rows],
                            dtype="datetime64[D]")
    return out


_DAYS = ("promised_day", "estimate_day")


def _one_attributes(shipment: Mapping[str, object]) -> dict[str, object]:
    """One shipment mapping's attribute values (:func:`_attributes` makes the columns)."""
    lane, state, km = lane_attributes(_missing_as_none(shipment.get("origin_postal_code")),
                                       _missing_as_none(shipment.get("destination_postal_code")))
    raw_country = _missing_as_none(shipment.get("destination_country"))
    country = "US" if raw_country is None else str(raw_country)
    postal = _missing_as_none(shipment.get("destination_postal_code"))
    return {
        "carrier": _one_category(shipment.get("carrier")),
        "service_level": _one_category(shipment.get("service_level")),
        "lane": lane, "destination_state": state, "distance_km": km,
        "country": country if country in HOLIDAY_COUNTRIES else "US",
        "timezone": zip_timezone(postal, country),
        "label_s": _epoch_seconds(shipment.get("label_created_at")),
        "shipped_s": _epoch_seconds(shipment.get("shipped_at")),
        "delivered_s": _epoch_seconds(shipment.get("delivered_at")),
        "estimate_s": _epoch_seconds(shipment.get("carrier_estimate_as_of")),
        "tracking_number": str(shipment.get("tracking_number")),
        "shipment_id": str(shipment.get("shipment_id")),
        "promised_day": _missing_as_none(shipment.get("promised_delivery_date")),
        "estimate_day": _missing_as_none(shipment.get("carrier_estimated_delivery")),
    }


def _as_frame(out: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Feature arrays → the model's table: categoricals as pandas categories and numbers
    as float32 (what the booster sees anyway): a million shipments' snapshots then fit in
    well under a gigabyte."""
    return pd.DataFrame({f: pd.Categorical(out[f]) if f in CATEGORICAL
                         else np.asarray(out[f], dtype=np.float32) for f in FEATURES})


def _feature_frame(attrs: pd.DataFrame, scans: dict[str, np.ndarray], rows: np.ndarray,
                   as_of: np.ndarray, recent: RecentPerformance) -> pd.DataFrame:
    """Shipment rows + as-of instants (epoch s) → feature table (training, batches)."""
    return _as_frame(_feature_arrays(_attribute_arrays(attrs), scans, rows, as_of, recent))


def _attribute_arrays(attrs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns of :func:`shipment_attributes` the features read, as arrays; a text
    column's rows share one ``str`` per distinct value (``to_numpy()`` of pandas text
    makes one per row: ~60 bytes a row a column, 0.3 GB for a million shipments)."""
    return {c: _shared_text(attrs[c]) if pd.api.types.is_string_dtype(attrs[c].dtype)
            else attrs[c].to_numpy() for c in attrs.columns if c not in _ID_COLUMNS}


def _shared_text(values: pd.Series) -> np.ndarray:
    """``values.to_numpy()`` (object) with one object per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return np.asarray(uniques, dtype=object)[codes]


def _feature_arrays(a: Mapping[str, np.ndarray], scans: dict[str, np.ndarray],
                    rows: np.ndarray, as_of: np.ndarray, recent: RecentPerformance, *,
                    keys: Mapping[str, np.ndarray | pd.Categorical] | None = None
                    ) -> dict[str, np.ndarray]:
    """THE feature function: shipment attribute arrays + scans + (row, as-of instant in
    epoch s) queries → one array per feature. Training, batch scoring and the one-row
    refresh all end here. ``keys``: :func:`_recent_keys` of ``a`` when the caller already
    has them, or :func:`_recent_key_categories` (training asks chunk after chunk of the
    same shipments)."""
    zones = a["timezone"][rows]
    local = _to_local(as_of, zones)
    local_day = local.astype("datetime64[D]")
    label_s = a["label_s"][rows].astype(float)
    state = _scan_state(scans, rows, as_of, a["shipped_s"][rows].astype(float))
    handover = state["handover_s"]
    handover_day = _to_local(handover, zones).astype("datetime64[D]")
    label_day = _to_local(label_s, zones).astype("datetime64[D]")
    promised = a["promised_day"][rows].astype("datetime64[D]")
    has_promise = ~np.isnat(promised)
    safe_promise = np.where(has_promise, promised, local_day)
    countries = a["country"][rows]
    lead = np.full(len(rows), np.nan)
    remaining = np.full(len(rows), np.nan)
    since_handover = np.full(len(rows), np.nan)
    holidays = np.zeros(len(rows))
    for country in np.unique(countries):
        m = countries == country
        cal = busday_calendar(str(country))
        lead[m] = np.busday_count(label_day[m], safe_promise[m], busdaycal=cal)
        remaining[m] = np.busday_count(local_day[m], safe_promise[m], busdaycal=cal)
        since_handover[m] = np.busday_count(handover_day[m], local_day[m], busdaycal=cal)
        holidays[m] = holidays_within(local_day[m], 7, str(country))
    lead[~has_promise] = np.nan
    remaining[~has_promise] = np.nan
    since_handover[np.isnan(handover)] = np.nan
    # End of the promised local day, measured from now in hours.
    promise_end = safe_promise.astype("datetime64[ns]") + np.timedelta64(1, "D")
    hours_to_promise = np.where(has_promise, _hours(promise_end - local), np.nan)
    # The carrier's own estimate (a local date), from the moment the carrier gave it: a
    # snapshot before that instant must not see it (NaN compares False: no as-of, no use).
    estimate = a["estimate_day"][rows].astype("datetime64[D]")
    has_estimate = ~np.isnat(estimate) & (a["estimate_s"][rows].astype(float) <= as_of)
    estimate_end = np.where(has_estimate, estimate, local_day).astype(
        "datetime64[ns]") + np.timedelta64(1, "D")
    peak = is_peak_season(local_day)
    nov20 = local_day.astype("datetime64[Y]") + np.timedelta64(323, "D")
    days_into_peak = np.where(peak, (local_day - nov20).astype(np.int64), 0)

    out: dict[str, np.ndarray] = {
        "carrier": a["carrier"][rows], "service_level": a["service_level"][rows],
        "lane": a["lane"][rows], "destination_state": a["destination_state"][rows],
        "latest_status": state["latest_status"],
        "distance_km": a["distance_km"][rows].astype(float),
        "promised_lead_bdays": lead, "promise_remaining_bdays": remaining,
        "hours_to_promise": hours_to_promise,
        "weekday": ((local_day.astype(np.int64) + 3) % 7).astype(float),  # Monday = 0
        "local_hour": _hours(local - local_day),
        "holidays_next_7d": holidays, "peak_season": peak.astype(float),
        "days_into_peak": days_into_peak.astype(float),
        "hours_since_label": (as_of - label_s) / _HOUR_S,
        "hours_since_handover": (as_of - handover) / _HOUR_S,
        "bdays_since_handover": since_handover,
        "n_scans": state["n_scans"].astype(float),
        "hours_since_last_scan": (as_of - state["last_s"]) / _HOUR_S,
        "carrier_estimate_hours": np.where(has_estimate, _hours(estimate_end - local), np.nan),
    }
    keys = keys if keys is not None else _recent_keys(a)
    for name, family, window in _RECENT:
        med, count = recent.median(family, keys[family][rows], as_of, window)
        out[name] = med
        if name == "lane_transit_median_14d":
            out["lane_deliveries_14d"] = count.astype(float)
    out["carrier_backlog_days"] = recent.backlog_days("carrier_service",
                                                      keys["carrier_service"][rows], as_of)
    out["lane_backlog_days"] = recent.backlog_days("carrier_lane", keys["carrier_lane"][rows],
                                                   as_of)
    return out


def _recent_keys(a: Mapping[str, np.ndarray] | pd.DataFrame) -> dict[str, np.ndarray]:
    """Keys of the recent-performance families; carrier+service stands in for "carrier"
    because express and economy of one carrier are different products."""
    carrier = np.asarray(a["carrier"]).astype(str)
    return {
        "carrier_lane": np.char.add(np.char.add(carrier, "|"),
                                    np.asarray(a["lane"]).astype(str)),
        "carrier_service": np.char.add(np.char.add(carrier, "|"),
                                       np.asarray(a["service_level"]).astype(str)),
        "state": np.asarray(a["destination_state"]).astype(str),
    }


def _recent_key_categories(a: Mapping[str, np.ndarray] | pd.DataFrame
                           ) -> dict[str, pd.Categorical]:
    """:func:`_recent_keys` as categoricals: the same keys, but each distinct one is made
    once (a million shipments share a few thousand) and rows hold small integer codes
    instead of their own copy of the text (~50 MB a family for a million rows)."""
    carrier, service = _text_codes(a["carrier"]), _text_codes(a["service_level"])
    return {"carrier_lane": _joined(carrier, _text_codes(a["lane"])),
            "carrier_service": _joined(carrier, service),
            "state": _categorical(*_text_codes(a["destination_state"]))}


def _text_codes(values: object) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct texts) of ``np.asarray(values).astype(str)``, one ``str`` per
    distinct value."""
    arr = np.asarray(values, dtype=object)
    codes, uniques = pd.factorize(arr)
    text = [str(u) for u in uniques]
    missing = np.flatnonzero(codes < 0)
    if len(missing):  # None and NaN are both missing to pandas, but print differently
        extra, extra_codes = np.unique([str(v) for v in arr[missing]], return_inverse=True)
        codes[missing] = len(text) + extra_codes
        text += list(extra)
    text_codes, distinct = pd.factorize(np.array(text, dtype=object))  # may print alike
    return text_codes[codes], np.asarray(distinct, dtype=object)


def _joined(left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray]
            ) -> pd.Categorical:
    """Row-wise ``left + "|" + right`` of two :func:`_text_codes`, per distinct pair."""
    pair_codes, pairs = pd.factorize(left[0].astype(np.int64) * len(right[1]) + right[0])
    text = np.array([f"{left[1][p // len(right[1])]}|{right[1][p % len(right[1])]}"
                     for p in pairs], dtype=object)
    text_codes, distinct = pd.factorize(text)
    return _categorical(text_codes[pair_codes], np.asarray(distinct, dtype=object))


def _categorical(codes: np.ndarray, categories: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype=object))


def _scan_table(attrs: pd.DataFrame, events: pd.DataFrame) -> dict[str, np.ndarray]:
    """Events joined to shipment rows, sorted by (row, time), with a combined search key."""
    lookup = pd.Index(attrs["tracking_number"])
    row = _lookup_text(lookup, events["tracking_number"])
    when = _seconds(events["occurred_at"])
    status = _as_text(events["status"])
    keep = (row >= 0) & ~np.isnan(when)
    return _scans(len(attrs), row[keep], when[keep], status[keep])


def _scans(n_shipments: int, row: np.ndarray, when: np.ndarray, status: np.ndarray
           ) -> dict[str, np.ndarray]:
    """The scan table from (shipment row, epoch s, status) triples in any order."""
    if not _sorted_by_row_then_time(row, when):  # histories usually come sorted
        order = np.lexsort((when, row))
        row, when, status = row[order], when[order], status[order]
    is_label = status == "label_created"
    first_scan = np.full(n_shipments, np.nan)
    nonlabel = np.flatnonzero(~is_label)
    # First non-label event per row: reversed assignment leaves the earliest one.
    first_scan[row[nonlabel][::-1]] = when[nonlabel][::-1]
    return {"row": row, "s": when, "status": status, "is_label": is_label,
            "cum_scans": np.r_[0, np.cumsum(~is_label)], "first_scan_s": first_scan}


def _sorted_by_row_then_time(row: np.ndarray, when: np.ndarray) -> bool:
    """True when (row, when) pairs are already in lexsort order (NaN times never are)."""
    if len(row) < 2:
        return not np.isnan(when).any()
    step = np.diff(row)
    return bool((step >= 0).all() and (np.diff(when)[step == 0] >= 0).all()
                and not np.isnan(when).any())


def _lookup_text(index: pd.Index, values: pd.Series) -> np.ndarray:
    """``index.get_indexer(values.astype(str))``; a categorical is looked up once per
    category (millions of scans share a million tracking numbers)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        cats = values.cat.categories.astype(str)
        # A missing value reads as "nan", exactly as astype(str) would have it.
        found = np.append(index.get_indexer(cats), index.get_indexer(["nan"]))
        return found[codes]
    return index.get_indexer(values.astype(str))


def _as_text(values: pd.Series) -> np.ndarray:
    """``values.astype(str).to_numpy()`` (object), per category for a categorical."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = np.append(values.cat.categories.astype(str).to_numpy(dtype=object), "nan")
        return cats[values.cat.codes.to_numpy()]
    return values.astype(str).to_numpy()


def _scan_state(scans: dict[str, np.ndarray], rows: np.ndarray, as_of: np.ndarray,
                shipped_s: np.ndarray) -> dict[str, np.ndarray]:
    """What the scans said by each as-of instant: latest status, counts, handover time."""
    ev_row, ev_s = scans["row"], scans["s"]
    start = np.searchsorted(ev_row, rows, side="left")
    if len(ev_s):
        # Rows are sorted, then times: a key row * 2**32 + whole seconds is globally
        # sorted, so one searchsorted finds "events of row r up to t" for every query.
        base = np.floor(min(ev_s.min(), as_of.min())) - 1
        ev_key = (ev_row.astype(np.int64) << 32) + (np.floor(ev_s) - base).astype(np.int64)
        q_key = (rows.astype(np.int64) << 32) + (np.floor(as_of) - base).astype(np.int64)
        pos = np.searchsorted(ev_key, q_key, side="right")
        last = np.maximum(pos - 1, 0)
        has_event = pos > start
        latest = np.where(has_event, scans["status"][last], "label_created")
        last_s = np.where(has_event, ev_s[last], np.nan)
    else:
        pos = start
        latest = np.full(len(rows), "label_created", dtype=object)
        last_s = np.full(len(rows), np.nan)
    n_scans = scans["cum_scans"][pos] - scans["cum_scans"][start]
    first_scan = scans["first_scan_s"][rows]
    scanned = np.where(first_scan <= as_of, first_scan, np.nan)
    shipped = np.where(shipped_s <= as_of, shipped_s, np.nan)
    return {"latest_status": latest.astype(object), "n_scans": n_scans, "last_s": last_s,
            "handover_s": np.fmin(scanned, shipped)}


def _rank_within(group: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0-based rank of each masked element within its (sorted, contiguous) group."""
    cum = np.cumsum(mask)
    group_start = np.searchsorted(group, group, side="left")
    before = np.where(group_start > 0, cum[np.maximum(group_start - 1, 0)], 0)
    before = np.where(group_start > 0, before, 0)
    return cum - before - 1


def _category_text(values: pd.Series) -> np.ndarray:
    """Normalised category text ('UPS ' → 'ups'; missing → 'unknown'), per distinct value."""
    codes, uniques = pd.factorize(values.astype(object).to_numpy())
    clean = [str(u).strip().lower() or UNKNOWN for u in uniques]
    return np.append(np.asarray(clean, dtype=object), UNKNOWN)[codes]


def _zones(postal: pd.Series, country: np.ndarray) -> np.ndarray:
    """Destination timezone per row, looked up once per distinct (postal code, country)."""
    p_codes, p_uniq = pd.factorize(postal.astype(object).to_numpy())
    c_codes, c_uniq = pd.factorize(np.asarray(country, dtype=object))
    p_uniq = np.append(np.asarray(p_uniq, dtype=object), [None])
    p_codes = np.where(p_codes < 0, len(p_uniq) - 1, p_codes)
    codes, pair_ids = pd.factorize(p_codes.astype(np.int64) * len(c_uniq) + c_codes)
    zones = np.array([zip_timezone(p_uniq[i // len(c_uniq)], c_uniq[i % len(c_uniq)])
                      for i in pair_ids], dtype=object)
    return zones[codes]


def _one_category(value: object) -> str:
    """:func:`_category_text` of one value."""
    value = _missing_as_none(value)
    return UNKNOWN if value is None else (str(value).strip().lower() or UNKNOWN)


_NEVER_MISSING = (str, datetime, date, int)


def _missing_as_none(value: object) -> object:
    """None for None/NaN/NaT (what pandas treats as missing), else the value."""
    if type(value) in _NEVER_MISSING:  # the common case, without pd.isna
        return value
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _epoch_seconds(value: object) -> float:
    """One aware timestamp → float epoch seconds (NaN when missing), as :func:`_seconds`."""
    present = _missing_as_none(value)
    if present is None:
        return math.nan
    moment = present if isinstance(present, datetime) else pd.Timestamp(present).to_pydatetime()
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.timestamp()


def _seconds(values: pd.Series) -> np.ndarray:
    """Aware timestamps → float seconds since the epoch (NaN for missing).

    Float seconds keep microsecond precision for centuries, unlike float nanoseconds.
    """
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("us")
    out = idx.asi8 / 1e6
    out[idx.isna()] = np.nan
    return out


def _hours(delta: np.ndarray) -> np.ndarray:
    """timedelta64 array → float hours."""
    return delta.astype("timedelta64[us]").astype(np.int64) / 3.6e9


def _timestamps(seconds: np.ndarray) -> pd.Series:
    """Float epoch seconds → aware UTC timestamps (microsecond precision)."""
    known = np.isfinite(seconds)
    us = np.round(np.where(known, seconds, 0.0) * 1e6).astype(np.int64)
    out = pd.Series(pd.to_datetime(us, unit="us", utc=True))
    return out if known.all() else out.where(known)


def _to_local(seconds: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """Float epoch seconds (NaN → epoch) → naive local datetime64[ns] per zone."""
    us = np.nan_to_num(seconds * 1e6).astype(np.int64).astype("datetime64[us]")
    return utc_to_local(us.astype("datetime64[ns]"), zones)
