"""Training on a time-based split: fit, calibrate on the latest slice, test after cutoff;
then refit on everything known and calibrate on the latest outcomes for deployment.

Shipments are assigned to a period by ``label_created_at``:

    [first label ........ calibration start) → fit the evaluation booster
    [calibration start ........... cutoff)   → fit the conformal offsets
    [cutoff ...................... last label] → test (the report's numbers)

The report's figures are the evaluation booster's, out of sample. The model handed back
(``refit=True``, the default chosen by the walk-forward backtest, see
docs/model-card.md) is a second booster fitted the same way on every parcel delivered by
the last label, calibrated like the daily job does (:func:`predictor.calibration.recalibrate`
as of the last label): a model trained on the 1st is no longer fitted on labels months
old. Its figures are those of the walk-forward backtest, not of the test period it saw.

Recent-performance features are built from every delivered shipment but answered
strictly as of each snapshot, so no row sees a delivery from its own future.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from predictor.baselines import LaneMedianBaseline, carrier_estimate_hours, promise_hours
from predictor.calibration import (
    WINDOW_DAYS,
    Outcomes,
    calibration_info,
    online_quantiles,
    recalibrate,
    scan_group,
    snapshot_outcomes,
)
from predictor.correction import segment_keys
from predictor.drift import WARM_UP_DAYS, reference_histograms
from predictor.evaluate import evaluate_methods
from predictor.features import (
    CATEGORICAL,
    recent_performance,
    shipment_attributes,
    spilled_snapshots,
    training_snapshots,
)
from predictor.fitting import (
    FitOptions,
    PreparedFit,
    fit_booster,
    prepare_fit,
    raw_rows,
    recency_weights,
    train_prepared,
)
from predictor.memory import release_memory
from predictor.model import MARGIN_NAME, QUANTILES, EtaModel
from predictor.spill import Shelf, SpilledTable, SpillFolder, take_rows

Progress = Callable[[str, float], None]
# Small, strongly regularised trees, chosen on the walk-forward backtest over every Olist
# month and the simulator (docs/model-card.md): on drifting real history deeper trees
# learn relationships that no longer hold (Olist, p50 MAE at handover: depth 6 with 20
# rows a leaf 4.84 days, depth 3 with 200 rows 4.52; 150 rounds instead of 60: 4.60).
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:quantileerror", "quantile_alpha": list(QUANTILES),
    "tree_method": "hist", "max_depth": 3, "learning_rate": 0.1, "min_child_weight": 200,
    "subsample": 0.8, "colsample_bytree": 0.8, "max_bin": 128, "max_cat_to_onehot": 1,
    "nthread": 2, "seed": 0,
}
DEFAULT_ROUNDS = 60
TARGET_COVERAGE = 0.8
# Rows per chunk when encoding and scoring snapshots, shipments per chunk of the oracle.
EVAL_CHUNK = 250_000
ORACLE_CHUNK = 20_000
# The columns of the calibration and test rows the calibration and the report read
# (correction segments, scan groups, the lane-median baseline, promise and carrier
# estimate); only these are copied out of the snapshot table.
REPORT_COLUMNS = ("carrier", "service_level", "lane", "promised_lead_bdays", "n_scans",
                  "hours_since_label", "hours_since_handover", "hours_to_promise",
                  "carrier_estimate_hours")
# Histories of more shipments than this keep their snapshot table's numeric columns on
# local disk (predictor.spill): ~90 bytes a snapshot, ~6.7 snapshots a shipment, that the
# chunked matrix building and scoring read back instead of holding.
SPILL_SHIPMENTS = 100_000


def train_model(shipments: pd.DataFrame, events: pd.DataFrame, *,
                cutoff: datetime | None = None, params: Mapping[str, Any] | None = None,
                progress: Progress | None = None, num_boost_round: int = DEFAULT_ROUNDS,
                calibration_fraction: float = 0.15, max_train_rows: int | None = None,
                trained_at: datetime | None = None, options: FitOptions | None = None,
                refit: bool = True, spill_shipments: int | None = SPILL_SHIPMENTS
                ) -> tuple[EtaModel, dict[str, Any]]:
    """Train an :class:`EtaModel` and evaluate it on the period after ``cutoff``.

    ``cutoff`` defaults to the 80th percentile of label times. ``max_train_rows``
    subsamples training snapshots (seeded) to bound memory and time on huge histories.
    ``trained_at`` is recorded in the metadata (defaults to the last label time: this
    library never reads the wall clock). ``options``: the fit's modelling choices
    (:class:`predictor.fitting.FitOptions`; ``params={"base_margin": True}`` still turns
    the base margin on). ``refit``: hand back a booster refitted on everything delivered
    by the last label (see the module docstring) instead of the evaluation booster.
    ``spill_shipments``: with a history of more shipments, the snapshot table's numeric
    columns wait in a temporary folder until both boosters' matrices are built
    (:func:`predictor.features.spilled_snapshots`; None: never); the model is the same.
    Returns the model and a report dict (``report["holdout_model"]``: the evaluation
    booster, fitted before the calibration slice, not for JSON).
    """
    report_progress = progress or (lambda _msg, _frac: None)
    report_progress("building snapshots", 0.0)
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    spill = (SpillFolder()
             if spill_shipments is not None and len(shipments) > spill_shipments else None)
    table: pd.DataFrame | SpilledTable
    if spill is None:
        table, y, meta = training_snapshots(shipments, events, recent=recent,
                                            attributes=attrs)
    else:
        table, y, meta = spilled_snapshots(shipments, events, spill.name, recent=recent,
                                           attributes=attrs)
    attrs = attrs.drop(columns=["tracking_number"])  # (a string per shipment) joined scans
    del recent  # rebuilt for the censored snapshots, after the fits (cheaper than holding)
    release_memory()
    label_s = attrs["label_s"].to_numpy()
    snap_label = label_s[snapshot_rows(attrs, meta["shipment_id"])]
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
    snap_label_fit = snap_label[fit_rows]
    snap_label_all = snap_label
    del snap_label

    merged = {**DEFAULT_PARAMS, **(params or {})}
    rounds = int(merged.pop("num_boost_round", num_boost_round))
    opts = options or FitOptions()
    if "base_margin" in merged:
        legacy = merged.pop("base_margin")  # True: the Little's-law margin, as before
        opts = replace(opts, base_margin=(MARGIN_NAME if legacy is True else legacy or None))
    report_progress("encoding", 0.1)
    # Memory (1M shipments: ~6.7M snapshots): the float32 training matrix is filled chunk
    # by chunk (no copy of the fit rows' table, predictor.fitting). After the first fit,
    # the evaluation booster scores the calibration and test rows in chunks, only the
    # columns the report reads are copied out (REPORT_COLUMNS), and the refit's matrix is
    # built; then the table goes, before the refit boosts and before the calibration's and
    # evaluation's temporaries exist. What the phases after the fits read (the shipment
    # attributes, the calibration and test rows) waits on the shelf (on disk when the
    # table is) while the boosters' matrices are built and boosted, and the refit's rows
    # while the first fit boosts. Free memory goes back to the system between phases.
    shelf = Shelf(None if spill is None else spill.name)
    fit_shipments = np.unique(snapshot_rows(attrs, meta["shipment_id"].iloc[fit_rows]))
    meta_test = meta.iloc[test_rows].reset_index(drop=True)
    cal_s, cal_delivered = (_epoch_s(meta[c].iloc[cal_rows]) for c in ("as_of", "delivered_at"))
    # The refit learns from parcels labelled early enough (FitOptions.min_label_age_days).
    all_rows = np.flatnonzero(opts.old_enough(snap_label_all, last.timestamp()))
    if max_train_rows is not None and len(all_rows) > max_train_rows:
        all_rows = np.sort(np.random.default_rng(0).choice(all_rows, max_train_rows,
                                                          replace=False))
    all_label = label_s[snapshot_rows(attrs, meta["shipment_id"].iloc[all_rows])]
    # The training set's main-feature histograms, for the live drift check (predictor.drift).
    drift_reference = _drift_reference(table, all_rows if refit else fit_rows,
                                       _epoch_s(meta["as_of"]), first.timestamp())
    del meta, snap_label_all
    fit_weights = recency_weights(snap_label_fit, cut.timestamp(), opts.half_life_days)
    del snap_label_fit
    shelf.put("later", (attrs, label_s, fit_shipments, meta_test, cal_s, cal_delivered))
    shelf.put("refit_rows", (all_rows, all_label))
    del attrs, label_s, fit_shipments, meta_test, cal_s, cal_delivered, all_rows, all_label
    release_memory()
    model = fit_booster(table, y, fit_rows, params=merged, rounds=rounds, options=opts,
                        weights=fit_weights, progress=report_progress)
    del fit_weights
    release_memory()

    # The evaluation booster's raw outputs on the calibration and test rows.
    raw_cal = raw_rows(model, table, cal_rows)
    raw_test = raw_rows(model, table, test_rows)
    X_cal, y_cal = take_rows(table, cal_rows, REPORT_COLUMNS), y[cal_rows]
    X_test, y_test = take_rows(table, test_rows, REPORT_COLUMNS), y[test_rows]
    rows_info = {"train": int(len(fit_rows)), "calibration": int(len(cal_rows)),
                 "test": int(len(test_rows))}
    del fit_rows, cal_rows, test_rows
    shelf.put("scored", (raw_cal, raw_test, X_cal, y_cal, X_test, y_test))
    del raw_cal, raw_test, X_cal, y_cal, X_test, y_test
    all_rows, all_label = shelf.take("refit_rows")
    # Fitted before the calibration slice: what a promotion gate may score on later parcels
    # (the refitted model has seen them; predictor.promotion).
    holdout = model
    refitted: EtaModel | None = None
    prepared: PreparedFit | None = None
    if refit:
        report_progress("refitting on everything known", 0.9)
        prepared = prepare_fit(table, y, all_rows, params=merged, options=opts,
                               weights=recency_weights(all_label, last.timestamp(),
                                                       opts.half_life_days))
        rows_info["refit"] = int(len(all_rows))
    if isinstance(table, SpilledTable):
        table.remove_files()  # both boosters' matrices are built: not read again
    del table, y, all_rows, all_label
    release_memory()
    if prepared is not None:
        refitted = train_prepared(prepared, params=merged, rounds=rounds)
        del prepared
        release_memory()
    attrs, label_s, fit_shipments, meta_test, cal_s, cal_delivered = shelf.take("later")
    raw_cal, raw_test, X_cal, y_cal, X_test, y_test = shelf.take("scored")
    if spill is not None:
        spill.cleanup()

    report_progress("calibrating", 0.92)
    # Static conformal offsets on the calibration slice: kept for the report (what the
    # window would hold without adaptation).
    static = conformal_offsets(raw_cal, y_cal, X_cal["n_scans"].to_numpy())
    # Adaptive calibration (predictor.calibration): every out-of-sample snapshot with what
    # became of it (calibration and test slices, and parcels never delivered, censored).
    test_s = _epoch_s(meta_test["as_of"])
    test_group = scan_group(X_test["n_scans"].to_numpy())
    end_s = float(np.nanmax(np.r_[attrs["delivered_s"].to_numpy(), label_s]))
    never = np.flatnonzero(~np.isfinite(attrs["delivered_s"].to_numpy())
                           & (label_s >= cal_start.timestamp()))
    corrected = opts.correction
    test_segments = segment_keys(X_test) if corrected else None
    parts = [Outcomes(cal_s, raw_cal, cal_delivered, scan_group(X_cal["n_scans"].to_numpy()),
                      segment=segment_keys(X_cal) if corrected else None),
             Outcomes(test_s, raw_test, _epoch_s(meta_test["delivered_at"]), test_group,
                      segment=test_segments)]
    del X_cal, y_cal, raw_cal, cal_s, cal_delivered
    if len(never):
        parts.append(snapshot_outcomes(model, shipments.iloc[never], events,
                                       recent=recent_performance(shipments, attrs),
                                       censor_at=end_s))
    outcomes = Outcomes.concat(parts)
    del parts
    # As known at the cutoff: the whole calibration slice's cohort, then the usual window.
    initial = outcomes.factors(cut.timestamp(), (cut - cal_start).total_seconds() / 86400)
    initial = outcomes.factors(cut.timestamp(), WINDOW_DAYS, previous=initial)
    # The test period as a daily recalibration serves it: factors from what was known at
    # the start of each day (the static offsets beside it, on the same snapshots).
    online, state = online_quantiles(outcomes, test_s, raw_test, test_group, initial,
                                     segments=test_segments)
    online.sort(axis=1)
    model.conformal = static
    static_q = model.calibrate(raw_test, X_test["n_scans"].to_numpy())
    # The evaluation booster as it would be deployed: factors as known at its last label.
    deployed = outcomes.factors(last.timestamp(), WINDOW_DAYS, previous=state)
    del outcomes, raw_test, test_segments, test_group, state, initial
    release_memory()

    report_progress("evaluating", 0.96)
    baseline = LaneMedianBaseline.fit_attributes(attrs.iloc[fit_shipments])
    evaluation = evaluate_snapshots(model, X_test, y_test, meta_test, attrs, baseline,
                                    shipments, model_quantiles=np.clip(online, 0.0, None),
                                    extra={"model_static_calibration": static_q})
    # The refit's recalibration builds its own attributes and snapshots: not beside these.
    del X_test, y_test, meta_test, online, static_q, attrs, label_s, fit_shipments, baseline
    model.conformal = deployed
    model.metadata["calibration"] = calibration_info(last.timestamp(), WINDOW_DAYS)
    if refitted is not None:
        evaluated, model = model, refitted
        # Tails the latest cohort cannot resolve yet fall back to the evaluated factors.
        model.conformal = dict(evaluated.conformal)
        model.metadata["calibration"] = evaluated.metadata["calibration"]
        release_memory()
        recalibrate(model, shipments, events, last.floor("us").to_pydatetime())
    metrics = evaluation["overall"]["model"] if evaluation else {}
    stamp = pd.Timestamp(trained_at) if trained_at is not None else last
    digest = hashlib.sha256(model.booster.save_raw("ubj")).hexdigest()[:8]
    model.metadata = model.metadata | {
        "version": f"eta-{stamp:%Y%m%dT%H%M%S}-{digest}",
        "trained_at": stamp.isoformat(),
        "data_range": {"from": first.isoformat(), "to": last.isoformat(),
                       "calibration_from": cal_start.isoformat(), "cutoff": cut.isoformat(),
                       "trained_through": (last if refit else cal_start).isoformat()},
        "rows": rows_info,
        "fit_options": opts.describe() | {"refit": refit},
        "params": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                   for k, v in merged.items()} | {"num_boost_round": rounds},
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "categorical": [c for c in CATEGORICAL],
        "drift_reference": drift_reference,
    }
    report_progress("done", 1.0)
    report = {"model": {k: model.metadata[k] for k in ("version", "trained_at", "data_range",
                                                       "rows", "params", "calibration",
                                                       "fit_options")},
              "conformal": model.conformal, "conformal_static": static,
              "evaluation": evaluation, "holdout_model": holdout}
    return model, report


def _drift_reference(X: pd.DataFrame | SpilledTable, rows: np.ndarray, as_of_s: np.ndarray,
                     first_label_s: float, max_rows: int = 200_000) -> dict[str, Any]:
    """:func:`predictor.drift.reference_histograms` of the training rows once the history
    has warmed up (:data:`predictor.drift.WARM_UP_DAYS` after the first label: before it
    the recent-performance features see a network that was still filling up), a seeded
    sample of at most ``max_rows`` (a huge history costs no more than a small one)."""
    warm = rows[as_of_s[rows] >= first_label_s + WARM_UP_DAYS * 86400]
    rows = warm if len(warm) else rows
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_rows, replace=False))
    return reference_histograms(take_rows(X, rows))


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
                       shipments: pd.DataFrame, *, model_quantiles: np.ndarray | None = None,
                       extra: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Model, promise, lane-median and (on simulated data) oracle on the same snapshots.

    ``model_quantiles``: the model's forecasts when the caller has them (the adaptive
    calibration's, which depend on the day); else ``model.predict``. ``extra``: more
    methods' (p10, p50, p90) to report beside them.

    Every method is scored in chunks of rows (the oracle in chunks of shipments), so a
    million shipments' test period never holds more than one chunk's temporaries."""
    if len(y) == 0:
        return {}
    n = len(y)
    rows = snapshot_rows(attrs, meta["shipment_id"])
    zones = attrs["timezone"].to_numpy()[rows]
    promised_day = attrs["promised_day"].to_numpy().astype("datetime64[D]")[rows]
    promise = promise_hours(X)
    methods: dict[str, np.ndarray] = {"model": np.empty((n, 3)),
                                      "lane_median": np.empty((n, 3))}
    for lo in range(0, n, EVAL_CHUNK):
        part = X.iloc[lo:lo + EVAL_CHUNK]
        if model_quantiles is None:
            methods["model"][lo:lo + EVAL_CHUNK] = model.predict(part)
        methods["lane_median"][lo:lo + EVAL_CHUNK] = baseline.predict(part)
    if model_quantiles is not None:
        methods["model"] = model_quantiles
    methods |= dict(extra or {})
    methods["promise"] = np.column_stack([np.full(n, np.nan), promise, np.full(n, np.nan)])
    # The carrier's own estimate, on the snapshots where the carrier had given one.
    estimate = carrier_estimate_hours(X) if "carrier_estimate_hours" in X else np.full(n, np.nan)
    has_estimate = np.isfinite(estimate)
    dates: dict[str, np.ndarray] = {}
    subsets: dict[str, np.ndarray] = {}
    if has_estimate.any():
        methods["carrier_estimate"] = np.column_stack([np.full(n, np.nan), estimate,
                                                       np.full(n, np.nan)])
        day = attrs["estimate_day"].to_numpy().astype("datetime64[D]")[rows]
        dates["carrier_estimate"] = np.where(has_estimate, day, np.datetime64("NaT"))
        subsets["with_carrier_estimate"] = has_estimate
    if "oracle_transit_bdays" in shipments.columns:
        as_of = pd.DatetimeIndex(meta["as_of"]).tz_convert("UTC").tz_localize(None)
        methods["oracle"] = _oracle_forecasts(shipments, rows, as_of.as_unit("ns").values)
    has_promise = ~np.isnat(promised_day)
    return evaluate_methods(methods, y, meta, zones,
                            promised_day if has_promise.any() else None, dates=dates,
                            subsets=subsets)


def snapshot_rows(attrs: pd.DataFrame, shipment_ids: pd.Series) -> np.ndarray:
    """Row in ``attrs`` of each snapshot's shipment (-1 if absent); a categorical id
    column (what :func:`training_snapshots` gives) is looked up once per shipment."""
    index = pd.Index(attrs["shipment_id"])
    if isinstance(shipment_ids.dtype, pd.CategoricalDtype):
        found = np.append(index.get_indexer(shipment_ids.cat.categories), -1)
        return found[shipment_ids.cat.codes.to_numpy()]
    return index.get_indexer(shipment_ids)


def _oracle_forecasts(shipments: pd.DataFrame, rows: np.ndarray, as_of: np.ndarray
                      ) -> np.ndarray:
    """The oracle's (p10, p50, p90) per snapshot, ORACLE_CHUNK shipments at a time (each
    shipment's outcome grid is 200 instants: all of them at once would take gigabytes)."""
    from predictor.oracle import oracle_grid, oracle_quantiles

    uniq, inverse = np.unique(rows, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(0, len(uniq) + ORACLE_CHUNK,
                                                       ORACLE_CHUNK))
    out = np.empty((len(rows), 3))
    for k, lo in enumerate(range(0, len(uniq), ORACLE_CHUNK)):
        grid = oracle_grid(shipments.iloc[uniq[lo:lo + ORACLE_CHUNK]].reset_index(drop=True))
        sel = order[bounds[k]:bounds[k + 1]]
        out[sel] = oracle_quantiles(grid, inverse[sel] - lo, as_of[sel])
    return out


def _epoch_s(values: pd.Series) -> np.ndarray:
    """Aware timestamps → float epoch seconds (NaN for missing)."""
    idx = pd.DatetimeIndex(values).as_unit("us")
    return np.where(idx.isna(), np.nan, idx.asi8 / 1e6)
