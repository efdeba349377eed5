"""Drift: is the model still being asked what it learned, and does it still answer as well?

- Input drift: the population stability index (PSI) of the model's main features, the
  inputs it scored recently against its training set. The training set's histograms are
  stored in the model's metadata at train time (:func:`reference_histograms`, key
  ``drift_reference``), so a check needs the artefact and the recent history only.
  PSI = Σ (a − e) · ln(a / e) over bins (e: training share, a: recent share); by the usual
  rule of thumb under 0.1 is stable, 0.1–0.25 a moderate shift, over 0.25 a major one.
- Residual drift: recent live errors against the model's own validation errors
  (:func:`residual_alarms`).

Numeric features are binned on the training set's quintiles (plus a bin for missing);
categorical ones keep their most frequent categories, the rest folded into one bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from predictor.features import CATEGORICAL, recent_performance, training_snapshots

# The features whose population is watched: what the parcel is (carrier, service, lane
# distance, promise) and how fast the networks have been delivering (recent transit
# medians). Not the backlog: it follows the week's volume, which moves by design (a peak
# is not drift), and a congested network shows in the residuals.
MAIN_FEATURES = ("carrier", "service_level", "distance_km", "promised_lead_bdays",
                 "hours_to_promise", "carrier_transit_median_7d", "carrier_transit_median_14d",
                 "lane_transit_median_14d")
# Quintiles: recent-transit medians take few distinct values in a week (one per carrier
# and day), and finer bins make a stable network look like a shifted one (figures in
# docs/model-card.md, "Watching it in production").
BINS = 5
# Training rows from the history's first days are not the reference: the recent-transit
# features look back 14 days and see a network still filling up.
WARM_UP_DAYS = 14
TOP_CATEGORIES = 30
OTHER = "__other__"
MISSING = "__missing__"
# Shares are floored at this before the log (an empty bin on one side is not infinite).
EPSILON = 1e-4
# Fewer recent inputs than this: no PSI (a handful of parcels is noise, not drift).
MIN_ROWS = 50


def reference_histograms(X: pd.DataFrame, features: Sequence[str] = MAIN_FEATURES,
                         max_rows: int = 500_000, seed: int = 0) -> dict[str, Any]:
    """The training set's distribution of each main feature present in ``X``, as stored
    in a model's metadata (JSON-ready): numeric ``{"edges": [...], "shares": [...]}``
    (the last share is the missing values'), categorical ``{"categories": [...],
    "shares": [...]}`` (then the other categories', then the missing values')."""
    if len(X) > max_rows:
        X = X.iloc[np.sort(np.random.default_rng(seed).choice(len(X), max_rows,
                                                              replace=False))]
    out: dict[str, Any] = {}
    for name in features:
        if name not in X.columns:
            continue
        if name in CATEGORICAL:
            text = _text(X[name])
            counts = pd.Series(text[text != MISSING]).value_counts()
            categories = [str(c) for c in counts.index[:TOP_CATEGORIES]]
            out[name] = {"categories": categories,
                         "shares": _category_shares(text, categories).tolist()}
        else:
            values = _numbers(X[name])
            finite = values[np.isfinite(values)]
            edges = (np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1]))
                     if len(finite) else np.array([]))
            out[name] = {"edges": edges.tolist(),
                         "shares": _numeric_shares(values, edges).tolist()}
    return out


def population_stability(reference: Mapping[str, Any], values: pd.Series | np.ndarray
                         ) -> float:
    """PSI of ``values`` against one feature's reference histogram."""
    expected = np.asarray(reference["shares"], dtype=float)
    if "categories" in reference:
        actual = _category_shares(_text(pd.Series(values)), list(reference["categories"]))
    else:
        actual = _numeric_shares(_numbers(pd.Series(values)), np.asarray(reference["edges"]))
    e, a = np.maximum(expected, EPSILON), np.maximum(actual, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: Mapping[str, Any], X: pd.DataFrame) -> dict[str, float]:
    """PSI of every referenced feature present in ``X`` (empty under :data:`MIN_ROWS`)."""
    if len(X) < MIN_ROWS:
        return {}
    return {name: round(population_stability(ref, X[name]), 4)
            for name, ref in reference.items() if name in X.columns}


def recent_inputs(shipments: pd.DataFrame, events: pd.DataFrame, since_s: float,
                  until_s: float) -> pd.DataFrame:
    """The inputs the model was asked about between two instants (epoch seconds): every
    shipment's as-of snapshots (label, each scan, between scans) in that span, from the
    history as known at ``until_s`` (parcels still out included)."""
    if shipments.empty:
        return pd.DataFrame()
    recent = recent_performance(shipments)
    X, _, meta = training_snapshots(shipments, events, recent=recent, censor_at=until_s)
    as_of = pd.DatetimeIndex(meta["as_of"]).as_unit("us").asi8 / 1e6
    keep = (as_of >= since_s) & (as_of < until_s)
    return X.loc[keep].reset_index(drop=True)


def psi_alarms(psi: Mapping[str, float], threshold: float) -> list[str]:
    """``feature_drift:<name>`` for each feature whose PSI exceeds ``threshold``."""
    return [f"feature_drift:{name}" for name, value in sorted(psi.items())
            if value > threshold]


def residual_alarms(live_mae: float | None, validation_mae: float | None,
                    live_coverage: float | None, validation_coverage: float | None,
                    mae_ratio: float, coverage_drop: float) -> list[str]:
    """``residual_drift:mae`` when live MAE exceeds ``mae_ratio`` × the validation MAE;
    ``residual_drift:coverage`` when live coverage is more than ``coverage_drop`` below
    the validation coverage."""
    alarms = []
    if live_mae is not None and validation_mae and live_mae > mae_ratio * validation_mae:
        alarms.append("residual_drift:mae")
    if (live_coverage is not None and validation_coverage is not None
            and live_coverage < validation_coverage - coverage_drop):
        alarms.append("residual_drift:coverage")
    return alarms


def validation_errors(metadata: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The model's own validation p50 MAE (days) and p10–p90 coverage, from its metadata
    (the test period's figures recorded at train time)."""
    metrics = metadata.get("metrics") or {}
    mae = metrics.get("mae_days")
    if mae is None and metrics.get("mae_hours") is not None:
        mae = float(metrics["mae_hours"]) / 24.0
    coverage = metrics.get("coverage_p10_p90")
    return (None if mae is None else float(mae),
            None if coverage is None else float(coverage))


def _text(values: pd.Series) -> np.ndarray:
    text = values.astype(object).where(values.notna(), MISSING).astype(str).to_numpy()
    return np.where(np.isin(text, ("nan", "None", "<NA>")), MISSING, text)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(edges) + 2)
    finite = np.isfinite(values)
    np.add.at(counts, np.searchsorted(edges, values[finite], side="left"), 1)
    counts[-1] = (~finite).sum()
    return counts / max(len(values), 1)


def _category_shares(text: np.ndarray, categories: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    other, missing = len(categories), len(categories) + 1
    codes = np.array([missing if t == MISSING else index.get(t, other) for t in text],
                     dtype=int)
    return np.bincount(codes, minlength=len(categories) + 2) / max(len(text), 1)
