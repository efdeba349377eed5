"""Baselines the model must beat: the shop's promise, the carrier's own estimate and a
carrier/lane median.

Both answer in the same shape as the model: hours remaining (p10, p50, p90) per
snapshot, so :mod:`predictor.evaluate` scores everything alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictor.features import shipment_attributes

MIN_DELIVERIES = 5
# The promise is a date; as a point forecast we read it as local noon of that date.
PROMISE_HOUR = 12


@dataclass
class LaneMedianBaseline:
    """Transit quantiles (handover→delivery, hours) per carrier+lane, else carrier,
    else global, learned from training shipments; plus the median label→handover lag."""

    lane: dict[str, np.ndarray]
    carrier: dict[str, np.ndarray]
    overall: np.ndarray
    handover_lag_hours: float

    @classmethod
    def fit(cls, shipments: pd.DataFrame) -> LaneMedianBaseline:
        """Learn quantiles from delivered shipments that have a handover time."""
        return cls.fit_attributes(shipment_attributes(shipments))

    @classmethod
    def fit_attributes(cls, a: pd.DataFrame) -> LaneMedianBaseline:
        """:meth:`fit` from :func:`~predictor.features.shipment_attributes` rows."""
        a = a.reset_index(drop=True)
        transit = (a["delivered_s"] - a["shipped_s"]) / 3600.0
        lag = (a["shipped_s"] - a["label_s"]) / 3600.0
        ok = np.isfinite(transit) & (transit >= 0)
        frame = pd.DataFrame({"lane": (a["carrier"] + "|" + a["lane"])[ok],
                              "carrier": a["carrier"][ok], "t": transit[ok]})
        overall = np.nanquantile(frame["t"], [0.1, 0.5, 0.9]) if ok.any() else np.full(3, 72.0)
        return cls(lane=_quantiles_by(frame, "lane"), carrier=_quantiles_by(frame, "carrier"),
                   overall=np.asarray(overall, dtype=float),
                   handover_lag_hours=float(np.nanmedian(lag)) if np.isfinite(lag).any()
                   else 24.0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Hours remaining (n, 3): handover (known, or label + typical lag) + transit
        quantile − time already elapsed, floored at zero."""
        keys = (X["carrier"].astype(str) + "|" + X["lane"].astype(str)).to_numpy()
        carriers = X["carrier"].astype(str).to_numpy()
        q = np.empty((len(X), 3))
        for i, (k, c) in enumerate(zip(keys, carriers, strict=True)):
            q[i] = self.lane.get(k, self.carrier.get(c, self.overall))
        since_handover = X["hours_since_handover"].to_numpy(float)
        until_handover = self.handover_lag_hours - X["hours_since_label"].to_numpy(float)
        elapsed = np.where(np.isnan(since_handover), -np.maximum(until_handover, 0.0),
                           since_handover)
        return np.maximum(q - elapsed[:, None], 0.0)


def promise_hours(X: pd.DataFrame) -> np.ndarray:
    """The promise as hours remaining to local noon of the promised date (NaN if none)."""
    return X["hours_to_promise"].to_numpy(float) - (24 - PROMISE_HOUR)


def carrier_estimate_hours(X: pd.DataFrame) -> np.ndarray:
    """The carrier's own estimate as hours remaining to local noon of its date, where the
    carrier had given one by the snapshot (NaN elsewhere: before the first scan, or never)."""
    return X["carrier_estimate_hours"].to_numpy(float) - (24 - PROMISE_HOUR)


def _quantiles_by(frame: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    grouped = frame.groupby(key, observed=True)["t"]
    q = grouped.quantile([0.1, 0.5, 0.9]).unstack()
    n = grouped.size()
    q = q[n.reindex(q.index) >= MIN_DELIVERIES]
    return {str(k): row.to_numpy(float) for k, row in q.iterrows()}
