"""Baselines for the walk-forward backtest that adapt as the model does.

Each answers, for a snapshot taken at ``as_of``, from what was known at that instant only:

* ``promise``: the shop's promised date (local noon of it, as :mod:`predictor.baselines`);
* ``carrier_estimate``: the carrier's own date, from the scan that gave it on;
* ``global_median_28d``: quantiles of the transit of every parcel delivered in the last
  28 days (rolling);
* ``recent_median_14d`` / ``recent_median_28d``: the same over parcels of the same
  segment (carrier|service, or where there is none, the promise-lead bucket; see
  :mod:`predictor.correction`), over 14 or 28 days;
* ``oracle`` (simulated histories only): the simulator's own best forecast.

The rolling ones use :class:`predictor.recent.RecentPerformance` (deliveries on UTC days
strictly before the snapshot's day) and are conditional on the parcel's age: before
handover, quantiles of label→delivery time among parcels that took longer than the time
already elapsed since the label; after handover, of handover→delivery time likewise. So a
parcel that is late gets a later baseline ETA, as it would from anyone watching the
recent deliveries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictor.baselines import carrier_estimate_hours, promise_hours
from predictor.recent import RecentPerformance

ROLLING = (("global_median_28d", "all", 28), ("recent_median_14d", "segment", 14),
           ("recent_median_28d", "segment", 28))
_HOUR_S = 3600.0


def rolling_tables(attrs: pd.DataFrame, segment: np.ndarray
                   ) -> tuple[RecentPerformance, RecentPerformance]:
    """(handover→delivery, label→delivery) rolling tables of every delivered shipment,
    keyed by ``segment`` (one per shipment) and globally."""
    delivered = attrs["delivered_s"].to_numpy(float)
    families = {"all": np.full(len(attrs), "all", dtype=object),
                "segment": np.asarray(segment, dtype=object)}
    transit = (delivered - attrs["shipped_s"].to_numpy(float)) / _HOUR_S
    total = (delivered - attrs["label_s"].to_numpy(float)) / _HOUR_S
    return (RecentPerformance(delivered, transit, families),
            RecentPerformance(delivered, total, families))


def rolling_baselines(tables: tuple[RecentPerformance, RecentPerformance], X: pd.DataFrame,
                      segment: np.ndarray, as_of_s: np.ndarray) -> dict[str, np.ndarray]:
    """Hours remaining (n, 3) per rolling baseline for snapshots ``X`` at ``as_of_s``."""
    transit, total = tables
    since_handover = X["hours_since_handover"].to_numpy(float)
    since_label = X["hours_since_label"].to_numpy(float)
    handed = np.isfinite(since_handover)
    out: dict[str, np.ndarray] = {}
    everywhere = np.full(len(X), "all", dtype=object)
    for name, family, window in ROLLING:
        q = _conditional(transit, total, handed, since_handover, since_label, "all",
                         everywhere, as_of_s, window)
        if family == "segment":  # a segment with too little news: the global figure
            own = _conditional(transit, total, handed, since_handover, since_label,
                               "segment", np.asarray(segment, dtype=object), as_of_s, window)
            q = np.where(np.isnan(own[:, 1:2]), q, own)
        out[name] = q
    return out


def _conditional(transit: RecentPerformance, total: RecentPerformance, handed: np.ndarray,
                 since_handover: np.ndarray, since_label: np.ndarray, family: str,
                 keys: np.ndarray, as_of_s: np.ndarray, window: int) -> np.ndarray:
    q = np.full((len(keys), 3), np.nan)
    for table, mask, elapsed in ((transit, handed, since_handover),
                                 (total, ~handed, since_label)):
        idx = np.flatnonzero(mask)
        if len(idx):
            part, _ = table.quantiles(family, keys[idx], as_of_s[idx], window,
                                      elapsed_hours=elapsed[idx])
            q[idx] = part - np.nan_to_num(elapsed[idx])[:, None]
    floored: np.ndarray = np.maximum(q, 0.0)
    return floored


def date_baselines(X: pd.DataFrame) -> dict[str, np.ndarray]:
    """The promise and the carrier's estimate as (NaN, hours, NaN) rows."""
    n = len(X)
    out = {"promise": promise_hours(X)}
    estimate = carrier_estimate_hours(X)
    if np.isfinite(estimate).any():
        out["carrier_estimate"] = estimate
    return {k: np.column_stack([np.full(n, np.nan), v, np.full(n, np.nan)])
            for k, v in out.items()}
