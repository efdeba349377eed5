"""Recent delivery performance, answerable "as of" any instant without peeking ahead.

Carriers slow down for weeks (peak) or days (a storm in one state); the best early
signal is how long parcels that *already arrived* took. :class:`RecentPerformance`
keeps, per key (e.g. carrier+lane) and per UTC day, a histogram of handover→delivery
hours on log-spaced bins, cumulated over days. A window median "over the last 7 days as
of t" is then two array reads and a bin interpolation.

It also answers :meth:`RecentPerformance.backlog_days`, the Little's-law transit
estimate from parcels currently in flight, which reacts to congestion before any slow
parcel has arrived.

Leakage rule: a query at instant ``t`` sees only deliveries on UTC days strictly
before ``t``'s UTC day, so everything it uses was delivered before ``t``. (Deliveries
earlier on the same day are ignored; a day of lag is the price of daily rollups.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd

_S_PER_DAY = 86_400.0
# 1 h .. ~4 months on log bins ~6 % wide; under/overflow bins at both ends.
_EDGES = np.concatenate(([0.0], np.geomspace(1.0, 3000.0, 136), [np.inf]))
_MIDS = np.concatenate(([0.5], np.sqrt(_EDGES[1:-2] * _EDGES[2:-1]), [3000.0]))
MIN_COUNT = 3
# Keys of one family, one per row: strings, or a categorical of them.
Keys: TypeAlias = Sequence[str] | np.ndarray | pd.Categorical
# Longest supported window; queries further than this past the data see an empty window.
MAX_WINDOW_DAYS = 366
# Queries up to this many rows (a refresh) are answered from, and kept in, a cache of
# (family, window, key, day) answers of at most _ANSWERS_KEPT entries.
_FEW_QUERIES = 8
_ANSWERS_KEPT = 10_000  # ~2 MB at most; the runtime rebuilds this object every minute


class RecentPerformance:
    """Rolling medians of transit hours per key family, queryable as of any instant.

    ``families`` maps a family name (e.g. ``"carrier_lane"``) to the key of every
    delivered shipment in that family (one string per delivery, aligned with
    ``delivered_at`` and ``transit_hours``; a :class:`pandas.Categorical` of them is read
    by its codes, without a string per row).
    """

    def __init__(self, delivered_s: np.ndarray, transit_hours: np.ndarray,
                 families: Mapping[str, Keys],
                 handover_s: np.ndarray | None = None) -> None:
        """``delivered_s``: delivery instants as float seconds since the epoch (UTC), NaN
        when not delivered. ``handover_s`` (optional, aligned): carrier pickup instants,
        used for the in-flight backlog."""
        when = np.asarray(delivered_s, dtype=float)
        transit = np.asarray(transit_hours, dtype=float)
        ok = np.isfinite(when) & np.isfinite(transit) & (transit >= 0)
        all_days = np.floor(np.nan_to_num(when) / _S_PER_DAY).astype(np.int64)
        self._day0 = int(all_days[ok].min()) if ok.any() else 0
        day = all_days - self._day0
        self._n_days = int(day[ok].max()) + 1 if ok.any() else 1
        bins = np.searchsorted(_EDGES, np.nan_to_num(transit), side="right") - 1
        bins = np.clip(bins, 0, len(_MIDS) - 1)
        self._tables: dict[str, tuple[dict[str, int], np.ndarray]] = {}
        for name, keys in families.items():
            codes, uniques = pd.factorize(_subset(keys, ok))
            counts = np.zeros((len(uniques), self._n_days + 1, len(_MIDS)), dtype=np.int32)
            flat = (codes * (self._n_days + 1) + day[ok] + 1) * len(_MIDS) + bins[ok]
            counts += np.bincount(flat, minlength=counts.size).reshape(counts.shape).astype(
                np.int32)
            # cum[k, d] = deliveries of key k on days < d: a window is a difference.
            np.cumsum(counts, axis=1, out=counts)
            self._tables[name] = ({str(u): i for i, u in enumerate(uniques)}, counts)
        # (family, window, key code, day) -> (median, count): small queries' answers.
        self._answered: dict[tuple[str, int, int, int], tuple[float, int]] = {}
        self._backlog: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
        if handover_s is not None:
            for name, keys in families.items():
                self._backlog[name] = _backlog_table(keys, np.asarray(handover_s, float),
                                                     when)

    @property
    def families(self) -> tuple[str, ...]:
        """Names of the key families this object can answer for."""
        return tuple(self._tables)

    def median(self, family: str, keys: Keys, as_of_s: np.ndarray,
               window_days: int) -> tuple[np.ndarray, np.ndarray]:
        """(median transit hours, delivery count) per query over ``window_days`` full UTC
        days before each query's day (``as_of_s``: float epoch seconds). Median is NaN below
        ``MIN_COUNT`` deliveries."""
        index, cum = self._tables[family]
        key_codes = _key_codes(index, keys)
        day = np.floor(np.asarray(as_of_s, dtype=float) / _S_PER_DAY).astype(np.int64) - self._day0
        # Many queries share (key, day): answer each distinct pair once.
        if window_days > MAX_WINDOW_DAYS:
            raise ValueError(f"window_days must be <= {MAX_WINDOW_DAYS}")
        if len(key_codes) > _FEW_QUERIES:
            return self._medians(cum, key_codes, day, window_days)
        # A refresh asks for a shipment or a few, and all day long the same (key, day)
        # pairs: each is worked out once (the arrays' set-up costs more than the answer).
        asked = [(family, window_days, k, d)
                 for k, d in zip(key_codes.tolist(), day.tolist(), strict=True)]
        found = [self._answered.get(a) for a in asked]  # (threads may share this object)
        if None in found:
            med, count = self._medians(cum, key_codes, day, window_days)
            if len(self._answered) >= _ANSWERS_KEPT:
                self._answered.clear()
            self._answered.update(zip(asked, zip(med.tolist(), count.tolist(),
                                                 strict=True), strict=True))
            return med, count
        return (np.array([f[0] for f in found if f is not None], dtype=float),
                np.array([f[1] for f in found if f is not None], dtype=np.int64))

    def _medians(self, cum: np.ndarray, key_codes: np.ndarray, day: np.ndarray,
                 window_days: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`median` of one family's cumulated table ``cum``, for key codes and days
        (relative to the first day), each distinct pair once."""
        stride = self._n_days + MAX_WINDOW_DAYS + 2
        pair = key_codes * stride + np.clip(day, -1, self._n_days + MAX_WINDOW_DAYS) + 1
        uniq, inverse = np.unique(pair, return_inverse=True)
        u_key = np.floor_divide(uniq, stride)
        u_day = uniq - u_key * stride - 1
        hi = np.clip(u_day, 0, self._n_days)
        lo = np.clip(u_day - window_days, 0, self._n_days)
        known = u_key >= 0
        hist = np.zeros((len(uniq), len(_MIDS)), dtype=np.int64)
        hist[known] = cum[u_key[known], hi[known]] - cum[u_key[known], lo[known]]
        med, count = _hist_median(hist)
        return med[inverse], count[inverse]

    def quantiles(self, family: str, keys: Keys, as_of_s: np.ndarray,
                  window_days: int, levels: Sequence[float] = (0.1, 0.5, 0.9),
                  elapsed_hours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(quantiles (n, levels) of transit hours, delivery count) per query over the same
        window as :meth:`median` (same leakage rule). With ``elapsed_hours``, quantiles of
        the transit of parcels that took longer than that (a parcel still on its way after
        ``elapsed`` hours): what a recent-deliveries baseline knows of one in flight. NaN
        below ``MIN_COUNT`` deliveries (in the conditional part, too)."""
        index, cum = self._tables[family]
        key_codes = _key_codes(index, keys)
        day = np.floor(np.asarray(as_of_s, dtype=float) / _S_PER_DAY).astype(np.int64) - self._day0
        if window_days > MAX_WINDOW_DAYS:
            raise ValueError(f"window_days must be <= {MAX_WINDOW_DAYS}")
        hi = np.clip(day, 0, self._n_days)
        lo = np.clip(day - window_days, 0, self._n_days)
        known = key_codes >= 0
        hist = np.zeros((len(key_codes), len(_MIDS)), dtype=np.int64)
        hist[known] = cum[key_codes[known], hi[known]] - cum[key_codes[known], lo[known]]
        elapsed = (np.zeros(len(hist)) if elapsed_hours is None
                   else np.maximum(np.nan_to_num(np.asarray(elapsed_hours, float)), 0.0))
        below = _count_below(hist, elapsed)
        count = hist.sum(axis=1)
        left = count - below
        out = np.empty((len(hist), len(levels)))
        for j, q in enumerate(levels):
            out[:, j] = np.maximum(_hist_point(hist, below + q * left), elapsed)
        out[left < MIN_COUNT] = np.nan
        return out, count

    def backlog_days(self, family: str, keys: Keys,
                     as_of_s: np.ndarray) -> np.ndarray:
        """Parcels in flight at ``as_of`` divided by the daily pickup rate of the last 28
        days: by Little's law, the network's current mean transit in days. It moves as
        soon as parcels pile up, days before slow deliveries show in the medians.

        A parcel is in flight from pickup until delivery or 30 days, whichever comes
        first; both ends are known at ``as_of``, so nothing leaks from the future.
        NaN with fewer than ``MIN_COUNT`` pickups in the last 28 days.
        """
        if family not in self._backlog:
            return np.full(len(keys), np.nan)
        index, starts, ends = self._backlog[family]
        k = _key_codes(index, keys)
        t = np.floor(np.asarray(as_of_s, dtype=float)).astype(np.int64) - _BASE_S
        q = (np.maximum(k, 0) << 33) + t
        picked = np.searchsorted(starts, q, side="right")
        gone = np.searchsorted(ends, q, side="right")
        recent = picked - np.searchsorted(starts, q - 28 * 86_400, side="right")
        rate = recent / 28.0
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (picked - gone) / rate
        return np.where((k >= 0) & (recent >= MIN_COUNT), out, np.nan)


def _key_codes(index: Mapping[str, int], keys: Keys) -> np.ndarray:
    """Row codes of ``keys`` in ``index`` (-1 unknown or missing), one lookup per distinct key."""
    if isinstance(keys, pd.Categorical):
        found = np.array([index.get(str(k), -1) for k in keys.categories], dtype=np.int64)
        return np.append(found, -1)[keys.codes]  # code -1: missing
    values = np.asarray(keys, dtype=object)
    if len(values) <= 8:  # a refresh: factorizing costs more than it saves
        return np.array([-1 if pd.isna(k) else index.get(str(k), -1) for k in values],
                        dtype=np.int64)
    codes, uniques = pd.factorize(values)
    known = np.array([index.get(str(k), -1) for k in uniques], dtype=np.int64)
    return np.append(known, -1)[codes]  # factorize marks missing as -1


# Backlog keys pack (key code << 33) + seconds since 2000-01-01: sorted per key, globally.
_BASE_S = 946_684_800
_IN_FLIGHT_CAP_S = 30 * 86_400


def _subset(keys: Keys, mask: np.ndarray) -> np.ndarray | pd.Categorical:
    """``keys[mask]``: a categorical stays one (codes, no string per row)."""
    if isinstance(keys, pd.Categorical):
        return keys[mask]
    subset: np.ndarray = np.asarray(keys, dtype=object)[mask]
    return subset


def _backlog_table(keys: Keys, handover: np.ndarray, delivered: np.ndarray
                   ) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    ok = np.isfinite(handover)
    codes, uniques = pd.factorize(_subset(keys, ok))
    start = np.floor(handover[ok]).astype(np.int64) - _BASE_S
    end_s = np.fmin(np.where(np.isfinite(delivered[ok]), delivered[ok], np.inf),
                    handover[ok] + _IN_FLIGHT_CAP_S)
    end = np.floor(end_s).astype(np.int64) - _BASE_S
    starts = np.sort((codes.astype(np.int64) << 33) + start)
    ends = np.sort((codes.astype(np.int64) << 33) + end)
    return {str(u): i for i, u in enumerate(uniques)}, starts, ends


def _count_below(hist: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Deliveries of each histogram row faster than ``hours`` (geometric share of the bin
    that holds it)."""
    b = np.clip(np.searchsorted(_EDGES, hours, side="right") - 1, 0, hist.shape[1] - 1)
    cum = np.cumsum(hist, axis=1)
    rows = np.arange(len(hist))
    before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
    lo_edge = np.maximum(_EDGES[b], 0.5)
    hi_edge = np.where(np.isfinite(_EDGES[b + 1]), _EDGES[b + 1], 3000.0)
    span = np.log(np.maximum(hi_edge / lo_edge, 1.0 + 1e-9))  # the overflow bin has none
    frac = np.clip(np.log(np.maximum(hours, 0.5) / lo_edge) / span, 0, 1)
    below: np.ndarray = before + hist[rows, b] * frac
    return below


def _hist_point(hist: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The transit hours below which ``target`` deliveries of each row lie (geometric
    interpolation inside the bin, as :func:`_hist_median`)."""
    cum = np.cumsum(hist, axis=1)
    b = (cum < target[:, None]).sum(axis=1).clip(0, hist.shape[1] - 1)
    rows = np.arange(len(hist))
    before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
    in_bin = hist[rows, b]
    frac = np.where(in_bin > 0, (target - before) / np.maximum(in_bin, 1), 0.5)
    lo_edge = np.maximum(_EDGES[b], 0.5)
    hi_edge = np.where(np.isfinite(_EDGES[b + 1]), _EDGES[b + 1], 3000.0)
    point: np.ndarray = lo_edge * (hi_edge / lo_edge) ** np.clip(frac, 0.0, 1.0)
    return point


def _hist_median(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median from binned counts, interpolated geometrically inside the median bin."""
    count = hist.sum(axis=1)
    cum = np.cumsum(hist, axis=1)
    half = count / 2.0
    b = (cum < half[:, None]).sum(axis=1).clip(0, hist.shape[1] - 1)
    rows = np.arange(len(hist))
    before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
    in_bin = hist[rows, b]
    frac = np.where(in_bin > 0, (half - before) / np.maximum(in_bin, 1), 0.5)
    lo_edge = np.maximum(_EDGES[b], 0.5)
    hi_edge = np.where(np.isfinite(_EDGES[b + 1]), _EDGES[b + 1], 3000.0)
    med = lo_edge * (hi_edge / lo_edge) ** frac
    med = np.where(count >= MIN_COUNT, med, np.nan)
    return med, count
