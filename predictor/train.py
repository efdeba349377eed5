"""Training on a time-based split: fit, calibrate on the latest slice, test after cutoff.

Shipments are assigned to a period by ``label_created_at``:

    [first label ........ calibration start) → fit the booster
    [calibration start ........... cutoff)   → fit the conformal offsets
    [cutoff ...................... last label] → test (the report's numbers)

Recent-performance features are built from every delivered shipment but answered
strictly as of each snapshot, so no row sees a delivery from its own future.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from predictor.baselines import LaneMedianBaseline, promise_hours
from predictor.evaluate import evaluate_methods
from predictor.features import (
    CATEGORICAL,
    FEATURES,
    recent_performance,
    shipment_attributes,
    training_snapshots,
)
from predictor.model import (
    MARGIN_NAME,
    QUANTILES,
    EtaModel,
    base_margin,
    category_codes,
    feature_types,
)

Progress = Callable[[str, float], None]
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:quantileerror", "quantile_alpha": list(QUANTILES),
    "tree_method": "hist", "max_depth": 6, "learning_rate": 0.08, "min_child_weight": 20,
    "subsample": 0.8, "colsample_bytree": 0.8, "max_bin": 128, "max_cat_to_onehot": 1,
    "nthread": 2, "seed": 0,
}
DEFAULT_ROUNDS = 400
TARGET_COVERAGE = 0.8


def train_model(shipments: pd.DataFrame, events: pd.DataFrame, *,
                cutoff: datetime | None = None, params: Mapping[str, Any] | None = None,
                progress: Progress | None = None, num_boost_round: int = DEFAULT_ROUNDS,
                calibration_fraction: float = 0.15, max_train_rows: int | None = None,
                trained_at: datetime | None = None) -> tuple[EtaModel, dict[str, Any]]:
    """Train an :class:`EtaModel` and evaluate it on the period after ``cutoff``.

    ``cutoff`` defaults to the 80th percentile of label times. ``max_train_rows``
    subsamples training snapshots (seeded) to bound memory and time on huge histories.
    ``trained_at`` is recorded in the metadata (defaults to the last label time: this
    library never reads the wall clock). Returns the model and a report dict.
    """
    report_progress = progress or (lambda _msg, _frac: None)
    report_progress("building snapshots", 0.0)
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    X, y, meta = training_snapshots(shipments, events, recent=recent)
    label_s = pd.Series(attrs["label_s"].to_numpy(), index=attrs["shipment_id"].to_numpy())
    snap_label = label_s.reindex(meta["shipment_id"]).to_numpy()
    first = pd.Timestamp(np.nanmin(label_s), unit="s", tz="UTC")
    last = pd.Timestamp(np.nanmax(label_s), unit="s", tz="UTC")
    cut = (pd.Timestamp(cutoff) if cutoff is not None
           else pd.Timestamp(np.nanquantile(label_s, 0.8), unit="s", tz="UTC"))
    cal_start = cut - (cut - first) * calibration_fraction
    fit_rows = np.flatnonzero(snap_label < cal_start.timestamp())
    cal_rows = np.flatnonzero((snap_label >= cal_start.timestamp())
                              & (snap_label < cut.timestamp()))
    test_rows = np.flatnonzero(snap_label >= cut.timestamp())
    if len(fit_rows) == 0 or len(cal_rows) == 0:
        raise ValueError("not enough history before the cutoff to train and calibrate")
    if max_train_rows is not None and len(fit_rows) > max_train_rows:
        fit_rows = np.sort(np.random.default_rng(0).choice(fit_rows, max_train_rows,
                                                          replace=False))

    names = list(FEATURES)
    model = EtaModel(booster=xgb.Booster(), feature_names=names,
                     categories=category_codes(X.iloc[fit_rows]))
    merged = {**DEFAULT_PARAMS, **(params or {})}
    rounds = int(merged.pop("num_boost_round", num_boost_round))
    report_progress("encoding", 0.1)
    # Off by default: it helps on drift-heavy real histories (Olist's Black Friday) and
    # costs accuracy on stationary ones (see the module docstring of predictor.model).
    use_margin = bool(merged.pop("base_margin", False))
    if use_margin:
        model.metadata["base_margin"] = MARGIN_NAME
    dtrain = xgb.QuantileDMatrix(model.encode(X.iloc[fit_rows]), label=y[fit_rows],
                                 base_margin=base_margin(X.iloc[fit_rows]) if use_margin
                                 else None,
                                 feature_names=names, feature_types=feature_types(names),
                                 enable_categorical=True, max_bin=merged["max_bin"])
    merged["quantile_alpha"] = np.asarray(merged["quantile_alpha"], dtype=float)
    model.booster = xgb.train(merged, dtrain, rounds,
                              callbacks=[_ProgressCallback(report_progress, rounds)])
    del dtrain

    report_progress("calibrating", 0.9)
    raw_cal = model.predict_raw(X.iloc[cal_rows])
    model.conformal = conformal_offsets(raw_cal, y[cal_rows],
                                        X["n_scans"].to_numpy()[cal_rows])

    report_progress("evaluating", 0.95)
    fit_ids = set(meta["shipment_id"].iloc[fit_rows])
    baseline = LaneMedianBaseline.fit(shipments[shipments["shipment_id"].astype(str)
                                                 .isin(fit_ids)])
    evaluation = evaluate_snapshots(model, X.iloc[test_rows], y[test_rows],
                                    meta.iloc[test_rows].reset_index(drop=True), attrs,
                                    baseline, shipments)
    metrics = evaluation["overall"]["model"] if evaluation else {}
    stamp = pd.Timestamp(trained_at) if trained_at is not None else last
    digest = hashlib.sha256(model.booster.save_raw("ubj")).hexdigest()[:8]
    model.metadata = model.metadata | {
        "version": f"eta-{stamp:%Y%m%dT%H%M%S}-{digest}",
        "trained_at": stamp.isoformat(),
        "data_range": {"from": first.isoformat(), "to": last.isoformat(),
                       "calibration_from": cal_start.isoformat(), "cutoff": cut.isoformat()},
        "rows": {"train": int(len(fit_rows)), "calibration": int(len(cal_rows)),
                 "test": int(len(test_rows))},
        "params": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                   for k, v in merged.items()} | {"num_boost_round": rounds},
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "categorical": [c for c in CATEGORICAL],
    }
    report_progress("done", 1.0)
    report = {"model": {k: model.metadata[k] for k in ("version", "trained_at", "data_range",
                                                       "rows", "params")},
              "conformal": model.conformal, "evaluation": evaluation}
    return model, report


def conformal_offsets(raw: np.ndarray, y: np.ndarray, n_scans: np.ndarray | None = None,
                      coverage: float = TARGET_COVERAGE) -> dict[str, float]:
    """Conformalised quantile regression (CQR), one offset per side and per scan group.

    Each tail should hold (1 - coverage) / 2 of the outcomes; the offset is the
    finite-sample-corrected quantile of how far outcomes fall beyond that raw bound
    (negative offsets narrow a too-wide side). Offsets are fitted overall
    (``lower``/``upper``) and per group of scans seen so far (0, 1, 2+: before pickup,
    just picked up, moving), because the raw model is not equally calibrated early and
    late; a group with under 200 calibration rows falls back to the overall offsets.
    """
    out = _cqr(raw, y, coverage)
    if n_scans is not None:
        group = np.minimum(np.nan_to_num(n_scans), 2).astype(int)
        for g in range(3):
            mask = group == g
            if mask.sum() >= 200:
                part = _cqr(raw[mask], y[mask], coverage)
                out |= {f"lower_{g}": part["lower"], f"upper_{g}": part["upper"]}
    return out


def _cqr(raw: np.ndarray, y: np.ndarray, coverage: float) -> dict[str, float]:
    tail = (1.0 - coverage) / 2.0
    n = len(y)
    if n == 0:
        return {"lower": 0.0, "upper": 0.0}
    level = min(1.0, (1.0 - tail) * (n + 1) / n)
    return {"lower": float(np.quantile(raw[:, 0] - y, level)),
            "upper": float(np.quantile(y - raw[:, 2], level))}


def evaluate_snapshots(model: EtaModel, X: pd.DataFrame, y: np.ndarray, meta: pd.DataFrame,
                       attrs: pd.DataFrame, baseline: LaneMedianBaseline,
                       shipments: pd.DataFrame) -> dict[str, Any]:
    """Model, promise, lane-median and (on simulated data) oracle on the same snapshots."""
    if len(y) == 0:
        return {}
    index = pd.Index(attrs["shipment_id"])
    rows = index.get_indexer(meta["shipment_id"])
    zones = attrs["timezone"].to_numpy()[rows]
    promised_day = attrs["promised_day"].to_numpy().astype("datetime64[D]")[rows]
    promise = promise_hours(X)
    methods: dict[str, np.ndarray] = {
        "model": model.predict(X),
        "lane_median": baseline.predict(X),
        "promise": np.column_stack([np.full(len(y), np.nan), promise, np.full(len(y), np.nan)]),
    }
    if "oracle_transit_bdays" in shipments.columns:
        from predictor.oracle import oracle_grid, oracle_quantiles

        uniq, inverse = np.unique(rows, return_inverse=True)
        grid = oracle_grid(shipments.iloc[uniq].reset_index(drop=True))
        as_of = pd.DatetimeIndex(meta["as_of"]).tz_convert("UTC").tz_localize(None)
        methods["oracle"] = oracle_quantiles(grid, inverse, as_of.as_unit("ns").values)
    has_promise = ~np.isnat(promised_day)
    return evaluate_methods(methods, y, meta, zones,
                            promised_day if has_promise.any() else None)


class _ProgressCallback(xgb.callback.TrainingCallback):
    """Forwards boosting progress (10 % → 90 % of the whole run) to a callable."""

    def __init__(self, progress: Progress, rounds: int) -> None:
        super().__init__()
        self._progress = progress
        self._rounds = max(rounds, 1)

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        if epoch % 10 == 0 or epoch + 1 == self._rounds:
            self._progress("boosting", 0.1 + 0.8 * (epoch + 1) / self._rounds)
        return False
