"""Adaptive calibration of the p10 / p50 / p90 window from the recent errors already known.

A conformal offset fitted once on the weeks before the training cutoff is right only while
the world stays as it was: in a surge (Olist's Black Friday 2017) the window held 60 % of
deliveries instead of 80 %. Here the calibration follows the recent errors instead, using
only what is known at the instant ``t`` it is computed for:

* the **cohort** is every ETA snapshot taken in the ``WINDOW_DAYS`` before ``t``, each
  weighted by its age (halving every ``COHORT_HALF_LIFE_DAYS``), so a change shows in the
  factors sooner than through a flat window;
* a snapshot whose parcel was delivered before ``t`` has a known error; one still in
  flight at ``t`` only tells that delivery comes later than ``t`` (right-censored). A
  Kaplan–Meier estimate over the cohort uses both, so it is not biased towards the fast
  parcels, the only ones delivered so far when a slowdown starts;
* errors are multiplicative, ``v = log((y + C) / (q + C))`` for each raw quantile ``q``
  (``C = C_HOURS``), so parcels with short horizons, which resolve within days, already
  move the factors for long ones; the factors are the ``LEVELS`` points of ``v`` (for q =
  p10, p50, p90: the window's early end, the median, its late end) and calibrated
  quantiles are ``(q + C) * exp(f) - C``;
* per scan group (0, 1, 2+ scans, as the static offsets were) when the group has at least
  ``MIN_EVENTS`` known deliveries in the cohort, else over the whole cohort; a tail the
  cohort cannot reach yet (too few parcels old enough to resolve it) keeps its previous
  factor.

**Leakage rule**: at ``t`` no snapshot taken at or after ``t`` is read, and a delivery at
or after ``t`` counts as "not delivered yet" (censored at ``t``).

Where it is used: training evaluates the test period as a daily job would serve it
(factors recomputed from scratch at the start of every UTC day, :func:`online_quantiles`)
and stores the factors as of its last label in ``EtaModel.conformal`` (``log_*`` keys,
saved and loaded with the model); :func:`recalibrate` recomputes them for a model from
recent history (the service's daily recalibration), and :func:`predictor.compare` uses it
to put champion and challenger on the same footing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from predictor.correction import fit_segment_factors, segment_factors, segment_keys
from predictor.correction import scan_group as scan_group  # its home: correction
from predictor.features import recent_performance, shipment_attributes, training_snapshots
from predictor.memory import give_back
from predictor.recent import RecentPerformance

if TYPE_CHECKING:
    from predictor.model import EtaModel

C_HOURS = 24.0
# The cohort: 28 days, chosen on the walk-forward backtest (docs/model-card.md): 14 days
# held 73 % of Olist's deliveries in the window, 21 days 77.9 %, 28 and 42 days 78.5 %.
WINDOW_DAYS = 28
# metadata["correction"] of a model whose calibration is also corrected per segment.
CORRECTION = "segment_v1"
# The per-segment correction reads the most recent part of the cohort only (None: all).
SEGMENT_WINDOW_DAYS: float | None = None
# Recency weighting of the cohort: a snapshot's weight halves every N days of age (None:
# a flat window). Chosen on the walk-forward backtest (docs/model-card.md, step 10): on
# Olist (retrained every 28 days) the window sat in 0.78-0.82 in 7 of 10 months with 7
# days, 5 flat, at a lower p50 MAE; the simulator was unchanged.
COHORT_HALF_LIFE_DAYS: float | None = 7.0
MIN_EVENTS = 200
# The calibration levels: the share of the cohort's parcels the calibrated p10 / p50 / p90
# should each leave delivered at or before it. The one home of the product's promise "about
# 80 % of parcels inside the window, at least 92 % by its late end" (the service's daily
# recalibration, training and the backtest all read it). Not the booster's alphas (0.1 /
# 0.5 / 0.9, predictor.model.QUANTILES): its raw quantiles are only what the factors
# scale. Chosen on the walk-forward backtest (docs/model-card.md, steps 9 and 10): at
# (0.1, 0.5, 0.9) Olist's window at handover held 77.3 % and 89.7 % of parcels were
# delivered by its p90 date; with the per-scan-group segment correction and the weighted
# cohort of step 10, at these levels 78.5 % and 92.6 % (the simulator 81.7 %, 96.0 %).
LEVELS = (0.12, 0.5, 0.93)
GROUPS = (0, 1, 2)
_NAMES = ("log_q10", "log_q50", "log_q90")
_DAY_S = 86_400.0


def is_adaptive(conformal: Mapping[str, float]) -> bool:
    """True for factors from this module (else: additive CQR offsets in hours)."""
    return "log_c_hours" in conformal


def apply_factors(raw: np.ndarray, group: np.ndarray | None,
                  conformal: Mapping[str, float],
                  segments: np.ndarray | None = None) -> np.ndarray:
    """Raw quantiles (n, 3) → calibrated ``(q + C) * exp(f) - C`` (not yet sorted/clipped),
    ``f`` the scan group's log factors plus, where the calibration has them and the rows'
    ``segments`` are given, the segment's (:mod:`predictor.correction`)."""
    c = float(conformal["log_c_hours"])
    f = group_factors(len(raw), group, conformal)
    if segments is not None:
        f = f + segment_factors(segments, conformal)
    calibrated: np.ndarray = (np.maximum(raw, 0.0) + c) * np.exp(f) - c
    return calibrated


def group_factors(n: int, group: np.ndarray | None, conformal: Mapping[str, float]
                  ) -> np.ndarray:
    """(n, 3) log factors of each row's scan group (the overall ones where a group has none)."""
    f = np.tile(np.array([conformal[k] for k in _NAMES], dtype=float), (n, 1))
    if group is not None:
        for g in GROUPS:
            keys = [f"{k}_{g}" for k in _NAMES]
            if all(k in conformal for k in keys):
                f[group == g] = [conformal[k] for k in keys]
    return f


def cohort_weights(snapshot_s: np.ndarray, at_s: float, half_life_days: float | None
                   ) -> np.ndarray | None:
    """Weight of each cohort snapshot at ``at_s``: halving every ``half_life_days`` of the
    snapshot's age (None: every snapshot counts the same)."""
    if half_life_days is None:
        return None
    age_days = np.maximum(at_s - np.asarray(snapshot_s, dtype=float), 0.0) / _DAY_S
    weights: np.ndarray = np.exp2(-age_days / float(half_life_days))
    return weights


def km_quantiles(values: np.ndarray, observed: np.ndarray, levels: tuple[float, ...],
                 weights: np.ndarray | None = None) -> np.ndarray:
    """Kaplan–Meier quantiles of right-censored ``values`` (``observed`` False: the true
    value is above the one given). NaN for a level the estimate never reaches.
    ``weights``: one per value (None: all 1), each event removing its weight's share of
    the weight still at risk."""
    order = np.lexsort((~observed, values))  # at ties, events before censorings
    v, e = values[order], observed[order]
    if weights is None:
        at_risk = len(v) - np.arange(len(v))
        cdf = 1.0 - np.cumprod(np.where(e, 1.0 - 1.0 / at_risk, 1.0))
    else:
        w = np.asarray(weights, dtype=float)[order]
        at_risk_w = np.cumsum(w[::-1])[::-1]
        cdf = 1.0 - np.cumprod(np.where(e, 1.0 - w / np.maximum(at_risk_w, 1e-300), 1.0))
    out = np.full(len(levels), np.nan)
    for j, q in enumerate(levels):
        k = int(np.searchsorted(cdf, q - 1e-12))
        if k < len(v):
            out[j] = v[k]
    return out


@dataclass
class Outcomes:
    """ETA snapshots with their raw quantiles and what became of them.

    ``delivered_s`` is NaN when the parcel was never delivered as far as the data knows;
    a delivery is only used for instants after it (see the module's leakage rule).
    """

    snapshot_s: np.ndarray
    raw: np.ndarray
    delivered_s: np.ndarray
    group: np.ndarray
    # Correction segment per snapshot (predictor.correction); None: no correction fitted.
    segment: np.ndarray | None = None

    def __post_init__(self) -> None:
        order = np.argsort(self.snapshot_s, kind="stable")
        self.snapshot_s = np.asarray(self.snapshot_s, dtype=float)[order]
        self.raw = np.maximum(np.asarray(self.raw, dtype=float)[order], 0.0)
        self.delivered_s = np.asarray(self.delivered_s, dtype=float)[order]
        self.group = np.asarray(self.group)[order]
        if self.segment is not None:
            self.segment = np.asarray(self.segment, dtype=object)[order]

    @classmethod
    def concat(cls, parts: list[Outcomes]) -> Outcomes:
        fields = [np.concatenate([getattr(p, f) for p in parts])
                  for f in ("snapshot_s", "raw", "delivered_s", "group")]
        segment = (np.concatenate([p.segment for p in parts])
                   if parts and all(p.segment is not None for p in parts) else None)
        return cls(fields[0], fields[1], fields[2], fields[3], segment=segment)

    def factors(self, at_s: float, window_days: float = WINDOW_DAYS,
                previous: Mapping[str, float] | None = None,
                segment_window_days: float | None = SEGMENT_WINDOW_DAYS,
                levels: tuple[float, float, float] = LEVELS,
                half_life_days: float | None = COHORT_HALF_LIFE_DAYS) -> dict[str, float]:
        """Calibration factors as known at ``at_s`` (epoch s) from the cohort of the last
        ``window_days`` (see the module docstring). ``previous`` fills what the cohort
        cannot estimate (else 0: the raw quantile). With segments, the per-segment
        correction of :mod:`predictor.correction` is fitted on what the group factors
        leave of the errors, over the last ``segment_window_days`` of the cohort (None:
        all of it)."""
        lo = np.searchsorted(self.snapshot_s, at_s - window_days * _DAY_S, side="left")
        hi = np.searchsorted(self.snapshot_s, at_s, side="left")  # strictly before at_s
        s, raw, group = self.snapshot_s[lo:hi], self.raw[lo:hi], self.group[lo:hi]
        delivered = self.delivered_s[lo:hi]
        known = delivered < at_s  # NaN compares False: never delivered = censored
        hours = np.where(known, delivered - s, at_s - s) / 3600.0
        log_y = np.log(np.maximum(hours, 0.0) + C_HOURS)
        weight = cohort_weights(s, at_s, half_life_days)
        prev = dict(previous or {})
        out: dict[str, float] = {"log_c_hours": C_HOURS}

        def fit(mask: np.ndarray, suffix: str, fallback: list[float]) -> list[float]:
            vals = []
            for j, name in enumerate(_NAMES):
                v = km_quantiles(log_y[mask] - np.log(raw[mask, j] + C_HOURS), known[mask],
                                 (levels[j],), None if weight is None else weight[mask]
                                 )[0] if mask.any() else np.nan
                if np.isnan(v):
                    v = prev.get(name + suffix, fallback[j])
                out[name + suffix] = float(v)
                vals.append(float(v))
            return vals

        overall = fit(np.ones(len(s), dtype=bool), "", [0.0, 0.0, 0.0])
        for g in GROUPS:
            mask = group == g
            if int(known[mask].sum()) >= MIN_EVENTS:
                fit(mask, f"_{g}", overall)
            elif all(f"{k}_{g}" in prev for k in _NAMES):
                for k in _NAMES:  # a group with too little news keeps what it had
                    out[f"{k}_{g}"] = float(prev[f"{k}_{g}"])
        if self.segment is not None:
            recent = (np.ones(len(s), dtype=bool) if segment_window_days is None
                      else s >= at_s - segment_window_days * _DAY_S)
            residual = (log_y[recent, None] - np.log(raw[recent] + C_HOURS)
                        - group_factors(int(recent.sum()), group[recent], out))
            out |= fit_segment_factors(residual, known[recent], self.segment[lo:hi][recent],
                                       prev, levels, km_quantiles,
                                       None if weight is None else weight[recent])
        return out


def online_quantiles(outcomes: Outcomes, snapshot_s: np.ndarray, raw: np.ndarray,
                     group: np.ndarray, initial: Mapping[str, float],
                     window_days: float = WINDOW_DAYS, segments: np.ndarray | None = None
                     ) -> tuple[np.ndarray, dict[str, float]]:
    """Calibrated (unsorted) quantiles for queries at ``snapshot_s``, with factors
    recomputed at the start of each query's UTC day from ``outcomes`` known by then:
    what a daily recalibration job serves. Returns them and the last factors used."""
    out = np.empty_like(np.asarray(raw, dtype=float))
    day = np.floor(np.asarray(snapshot_s, dtype=float) / _DAY_S)
    state: Mapping[str, float] = initial
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        state = outcomes.factors(d * _DAY_S, window_days, previous=state)
        out[rows] = apply_factors(raw[rows], group[rows], state,
                                  None if segments is None else segments[rows])
    return out, dict(state)


def snapshot_outcomes(model: EtaModel, shipments: pd.DataFrame, events: pd.DataFrame, *,
                      recent: RecentPerformance, censor_at: float, since: float | None = None,
                      chunk: int = 250_000) -> Outcomes:
    """Snapshots of ``shipments`` as known at ``censor_at`` (in-flight parcels included,
    censored), taken at or after ``since``, with ``model``'s raw quantiles (and their
    correction segments when the model is corrected per segment)."""
    X, _, meta = training_snapshots(shipments, events, recent=recent, censor_at=censor_at)
    snap = pd.DatetimeIndex(meta["as_of"]).as_unit("us").asi8 / 1e6
    keep = np.flatnonzero(snap >= since) if since is not None else np.arange(len(snap))
    raw = np.empty((len(keep), 3))
    for lo in range(0, len(keep), chunk):
        raw[lo:lo + chunk] = model.predict_raw(X.iloc[keep[lo:lo + chunk]])
    delivered = pd.DatetimeIndex(meta["delivered_at"]).as_unit("us")
    delivered_s = np.where(delivered.isna(), np.nan, delivered.asi8 / 1e6)[keep]
    segments = (segment_keys(X.iloc[keep]) if model.metadata.get("correction") == CORRECTION
                else None)
    return Outcomes(snap[keep], raw, delivered_s, scan_group(X["n_scans"].to_numpy()[keep]),
                    segment=segments)


def recalibrate(model: EtaModel, shipments: pd.DataFrame, events: pd.DataFrame,
                as_of: datetime, window_days: float = WINDOW_DAYS) -> dict[str, float]:
    """Recompute ``model.conformal`` from the history as known at ``as_of`` (a daily job's
    work): the snapshots of the last ``window_days``, delivered or still in flight.

    ``shipments``/``events``: every shipment labelled before ``as_of`` that was not yet
    delivered ``window_days`` before it, plus at least 14 more days of deliveries (the
    recent-performance features look back that far); later facts are ignored anyway.
    Returns the new factors (also stored, with ``metadata["calibration"]``); with no
    delivery in the window to learn from, the model keeps its calibration."""
    at = pd.Timestamp(as_of).timestamp()
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    delivered = attrs["delivered_s"].to_numpy()
    alive = (attrs["label_s"].to_numpy() < at) & ~(delivered < at - window_days * _DAY_S)
    # Every shipment's attributes (~290 MB for a million) are not read again: not beside
    # the in-flight snapshots' table.
    del attrs, delivered
    give_back()
    pool = snapshot_outcomes(model, shipments.iloc[np.flatnonzero(alive)], events,
                             recent=recent, censor_at=at, since=at - window_days * _DAY_S)
    if not (pool.delivered_s < at).any():  # nothing learnt yet: keep what the model has
        return dict(model.conformal)
    previous = model.conformal if is_adaptive(model.conformal) else None
    factors = pool.factors(at, window_days, previous=previous)
    model.conformal = factors
    model.metadata["calibration"] = calibration_info(at, window_days)
    return factors


def calibration_info(at_s: float, window_days: float) -> dict[str, object]:
    """What ``metadata["calibration"]`` records about the factors in force."""
    as_of = pd.Timestamp(round(at_s * 1e6), unit="us", tz="UTC")
    return {"method": "cohort_kaplan_meier_log", "as_of": as_of.isoformat(),
            "window_days": window_days, "c_hours": C_HOURS, "levels": list(LEVELS),
            "half_life_days": COHORT_HALF_LIFE_DAYS}
