"""Walk-forward backtest: replay a history in time order exactly as production runs it.

    python -m predictor.backtest --format olist --retrain-every 7d --json /tmp/bt.json
    python -m predictor.backtest --format simulated --shipments 30000 --days 120 \\
        --regime-change ups:60:1.5 --report /tmp/bt-sim

At every retrain point ``T`` (every ``retrain_every_days`` from ``start``, UTC midnights)
a booster is fitted (:func:`predictor.fitting.fit_booster`, the code path of
:func:`predictor.train.train_model`) on the snapshots of parcels **delivered before T**
only (and labelled ``FitOptions.min_label_age_days`` before it); parcels still in flight
at ``T`` are not in it. Every ``recalibrate_every_days`` the
calibration in force is recomputed at the day's start from the cohort of ETA snapshots of
the last ``window_days`` (:meth:`predictor.calibration.Outcomes.factors`: a delivery at
or after that instant counts as "not yet", a snapshot at or after it is not read) with the
current booster's raw quantiles, exactly as the service's daily
:func:`~predictor.calibration.recalibrate` does. Every snapshot of every delivered parcel
labelled in ``[start, end)`` (label, first scan = handover, later scans, and one instant
between scans) is then scored with the booster and the factors in force at its instant,
beside baselines that adapt too (:mod:`predictor.backtest_baselines`).

Why this is fast enough for every Olist month on 2 cores: snapshot features never depend
on when a model was trained (each is answered as of its own instant), so one snapshot
table is built once and every retrain only selects its rows; boosters are trained only at
retrain points (with ``rounds`` rounds) and score each row once.

One difference from production, on the side of caution: the cohort a recalibration reads
leaves out the "between scans" snapshots, because in a precomputed table that instant was
drawn between label and the (future) delivery; label and scan snapshots are known as
they happen. Months are the UTC month of the parcel's label.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from predictor.backtest_baselines import date_baselines, rolling_baselines, rolling_tables
from predictor.backtest_cli import (
    BACKTEST_NTHREAD,
    build_parser,
    config_from_args,
    load_history,
)
from predictor.backtest_report import (
    HEADLINE_STAGE,
    SURVIVOR_HOURS,
    score,
    table,
    write_html,
    write_json,
    write_plots,
)
from predictor.calibration import (
    COHORT_HALF_LIFE_DAYS,
    LEVELS,
    SEGMENT_WINDOW_DAYS,
    WINDOW_DAYS,
    Outcomes,
    apply_factors,
    scan_group,
)
from predictor.correction import route_keys, segment_keys
from predictor.features import (
    recent_performance,
    shipment_attributes,
    training_snapshots,
)
from predictor.fitting import FitOptions, fit_booster, raw_rows, recency_weights
from predictor.model import EtaModel
from predictor.train import DEFAULT_PARAMS, DEFAULT_ROUNDS, _oracle_forecasts, snapshot_rows

_DAY_S = 86_400.0
Progress = Callable[[str], None]
@dataclass(frozen=True)
class BacktestConfig:
    """How production is replayed (see the module docstring); defaults: the deployed
    configuration."""

    retrain_every_days: float | None = 7.0  # None: train once at the start, never again
    recalibrate_every_days: float = 1.0
    window_days: float = WINDOW_DAYS
    segment_window_days: float | None = SEGMENT_WINDOW_DAYS
    levels: tuple[float, float, float] = LEVELS  # calibration levels of p10 / p50 / p90
    cohort_half_life_days: float | None = COHORT_HALF_LIFE_DAYS  # None: a flat window
    rounds: int = DEFAULT_ROUNDS  # production's: the backtest replays what is deployed
    # Over predictor.train.DEFAULT_PARAMS.
    params: Mapping[str, Any] = field(default_factory=lambda: {"nthread": BACKTEST_NTHREAD})
    options: FitOptions = field(default_factory=FitOptions)
    start: datetime | None = None  # default: first month with min_deliveries known
    end: datetime | None = None  # default: after the last label
    min_deliveries: int = 1000

    def describe(self) -> dict[str, Any]:
        return {"retrain_every_days": self.retrain_every_days,
                "recalibrate_every_days": self.recalibrate_every_days,
                "window_days": self.window_days,
                "segment_window_days": self.segment_window_days,
                "levels": list(self.levels), "rounds": self.rounds,
                "cohort_half_life_days": self.cohort_half_life_days,
                "params": dict(self.params), "options": self.options.describe(),
                "start": None if self.start is None else str(self.start),
                "end": None if self.end is None else str(self.end)}


@dataclass
class Prepared:
    """Everything about a history that no configuration changes (built once)."""

    shipments: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray  # hours remaining; NaN for parcels never delivered
    snap_s: np.ndarray
    delivered_s: np.ndarray
    label_s: np.ndarray
    stage: np.ndarray
    group: np.ndarray
    segment: np.ndarray  # the correction's (route and scan group)
    route: np.ndarray  # carrier|service or promise-lead bucket: baselines and the report
    zones: np.ndarray
    month: np.ndarray
    promised_day: np.ndarray
    estimate_day: np.ndarray
    baselines: dict[str, np.ndarray]
    rows: np.ndarray  # shipment row of each snapshot


def prepare(shipments: pd.DataFrame, events: pd.DataFrame, *, oracle: bool = True,
            progress: Progress | None = None) -> Prepared:
    """The snapshot table of the whole history (delivered parcels, and those never
    delivered for the calibration cohorts) with its baselines."""
    say = progress or (lambda _m: None)
    shipments = shipments.reset_index(drop=True)
    attrs = shipment_attributes(shipments)
    recent = recent_performance(shipments, attrs)
    times = np.r_[attrs["label_s"], attrs["delivered_s"], attrs["shipped_s"]]
    end_s = float(np.nanmax(times)) + _DAY_S
    say("building snapshots")
    X, y, meta = training_snapshots(shipments, events, recent=recent, attributes=attrs,
                                    censor_at=end_s)
    rows = snapshot_rows(attrs, meta["shipment_id"])
    snap_s = pd.DatetimeIndex(meta["as_of"]).as_unit("us").asi8 / 1e6
    delivered_s = attrs["delivered_s"].to_numpy(float)[rows]
    label_s = attrs["label_s"].to_numpy(float)[rows]
    segment, route = segment_keys(X), route_keys(X)
    ship_segment = np.full(len(attrs), "unknown", dtype=object)
    ship_segment[rows] = route
    label_month = pd.DatetimeIndex(pd.to_datetime(label_s, unit="s", utc=True))
    month = np.asarray(label_month.strftime("%Y-%m"), dtype=object)
    estimate_day = attrs["estimate_day"].to_numpy().astype("datetime64[D]")[rows]
    has_estimate = np.isfinite(X["carrier_estimate_hours"].to_numpy(float))
    prep = Prepared(
        shipments=shipments, X=X, y=y, snap_s=snap_s, delivered_s=delivered_s,
        label_s=label_s, stage=meta["stage"].astype(str).to_numpy(),
        group=scan_group(X["n_scans"].to_numpy()), segment=segment, route=route,
        zones=attrs["timezone"].to_numpy()[rows], month=month,
        promised_day=attrs["promised_day"].to_numpy().astype("datetime64[D]")[rows],
        estimate_day=np.where(has_estimate, estimate_day, np.datetime64("NaT")),
        baselines={}, rows=rows)
    say("baselines")
    delivered = np.flatnonzero(np.isfinite(y))
    tables = rolling_tables(attrs, ship_segment)
    for name, q in (rolling_baselines(tables, X.iloc[delivered], route[delivered],
                                      snap_s[delivered])
                    | date_baselines(X.iloc[delivered])).items():
        full = np.full((len(y), 3), np.nan)
        full[delivered] = q
        prep.baselines[name] = full
    if oracle and "oracle_transit_bdays" in shipments.columns:
        say("oracle")
        as_of_ns = (np.round(snap_s[delivered] * 1e6).astype(np.int64)
                    .astype("datetime64[us]").astype("datetime64[ns]"))
        full = np.full((len(y), 3), np.nan)
        full[delivered] = _oracle_forecasts(shipments, rows[delivered], as_of_ns)
        prep.baselines["oracle"] = full
    return prep


def default_start(prep: Prepared, min_deliveries: int) -> pd.Timestamp:
    """The first UTC month start by which ``min_deliveries`` parcels had been delivered."""
    delivered = np.sort(np.unique(prep.delivered_s[np.isfinite(prep.delivered_s)]))
    if len(delivered) < min_deliveries:
        raise ValueError(f"the history has fewer than {min_deliveries} deliveries")
    enough = pd.Timestamp(delivered[min_deliveries - 1], unit="s", tz="UTC")
    return (enough + pd.offsets.MonthBegin(1)).normalize()


def default_end(prep: Prepared) -> pd.Timestamp:
    """After the last label, less trailing months with under a fifth of the median
    month's labels (the partial month an export ends in)."""
    months, counts = np.unique(prep.month[prep.stage == "label"], return_counts=True)
    keep = len(months)
    while keep > 1 and counts[keep - 1] < 0.2 * np.median(counts):
        keep -= 1
    if keep == len(months):
        return pd.Timestamp(np.nanmax(prep.label_s) + 1, unit="s", tz="UTC")
    return pd.Timestamp(f"{months[keep - 1]}-01", tz="UTC") + pd.offsets.MonthBegin(1)


def replay(prep: Prepared, config: BacktestConfig, progress: Progress | None = None, *,
           models: dict[Any, EtaModel] | None = None) -> dict[str, Any]:
    """Serve every scored snapshot as production would (see the module docstring).

    Returns ``scored`` (row indices into ``prep``), ``model`` (their calibrated p10/p50/p90
    hours), the retrain log (with each booster's digest) and the period. ``models``: a
    cache of boosters by (retrain point, fit settings), for runs that differ only in
    calibration."""
    say = progress or (lambda _m: None)
    start = (pd.Timestamp(config.start) if config.start is not None
             else default_start(prep, config.min_deliveries))
    start = start.tz_convert("UTC") if start.tzinfo else start.tz_localize("UTC")
    start = start.normalize()
    end = pd.Timestamp(config.end) if config.end is not None else default_end(prep)
    t0, t_end = start.timestamp(), end.timestamp()
    scored = np.flatnonzero(np.isfinite(prep.y) & (prep.label_s >= t0) & (prep.label_s < t_end))
    if len(scored) == 0:
        raise ValueError("no delivered parcel labelled in the backtest period")
    last = float(prep.snap_s[scored].max())
    every = config.retrain_every_days
    # Retrain points up to the last label scored; later snapshots keep the last model.
    points = [t0] if every is None else list(np.arange(t0, min(last, t_end), every * _DAY_S))
    bounds = points[1:] + [last + 1.0]
    params = {**DEFAULT_PARAMS, **dict(config.params)}
    params.pop("num_boost_round", None)
    window_s = config.window_days * _DAY_S
    cohort_ok = prep.stage != "between_scans"
    quantiles = np.full((len(prep.y), 3), np.nan)
    log: list[dict[str, Any]] = []
    state: dict[str, float] | None = None
    for t_k, t_next in zip(points, bounds, strict=True):
        serve = scored[(prep.snap_s[scored] >= t_k) & (prep.snap_s[scored] < t_next)]
        if len(serve) == 0:
            continue
        train = np.flatnonzero(np.isfinite(prep.y) & (prep.delivered_s < t_k)
                               & config.options.old_enough(prep.label_s, t_k))
        n_parcels = len(np.unique(prep.rows[train]))
        if n_parcels < 100:
            raise ValueError(f"only {n_parcels} parcels delivered before "
                             f"{pd.Timestamp(t_k, unit='s', tz='UTC')}: start later")
        tic = time.perf_counter()
        key = (t_k, config.rounds, json.dumps(params, sort_keys=True, default=str),
               json.dumps(replace(config.options, correction=False).describe(),
                          sort_keys=True))
        model = None if models is None else models.get(key)
        if model is None:
            weights = recency_weights(prep.label_s[train], t_k, config.options.half_life_days)
            model = fit_booster(prep.X, prep.y, train, params=params, rounds=config.rounds,
                                options=config.options, weights=weights)
            if models is not None:
                models[key] = model
        cohort = np.flatnonzero(cohort_ok & (prep.snap_s >= t_k - window_s)
                                & (prep.snap_s < t_next))
        need = np.union1d(cohort, serve)
        raw = raw_rows(model, prep.X, need)
        at = np.searchsorted(need, cohort)
        outcomes = Outcomes(prep.snap_s[cohort], raw[at], prep.delivered_s[cohort],
                            prep.group[cohort],
                            segment=prep.segment[cohort] if config.options.correction else None)
        serve_raw = raw[np.searchsorted(need, serve)]
        step = config.recalibrate_every_days * _DAY_S
        slot = np.floor((prep.snap_s[serve] - t_k) / step)
        first_factors: dict[str, float] | None = None
        for s in np.unique(slot):
            state = outcomes.factors(t_k + s * step, config.window_days, previous=state,
                                     segment_window_days=config.segment_window_days,
                                     levels=config.levels,
                                     half_life_days=config.cohort_half_life_days)
            first_factors = first_factors or dict(state)
            rows = np.flatnonzero(slot == s)
            idx = serve[rows]
            q = apply_factors(serve_raw[rows], prep.group[idx], state,
                              prep.segment[idx] if config.options.correction else None)
            q.sort(axis=1)
            quantiles[idx] = np.clip(q, 0.0, None)
        log.append({"at": pd.Timestamp(t_k, unit="s", tz="UTC").isoformat(),
                    "booster": hashlib.sha256(model.booster.save_raw("ubj")).hexdigest()[:12],
                    "train_rows": int(len(train)), "train_parcels": int(n_parcels),
                    "served": int(len(serve)), "seconds": round(time.perf_counter() - tic, 2),
                    "factors": first_factors})
        say(f"retrain {log[-1]['at'][:10]}: {n_parcels:,} parcels, "
            f"{len(serve):,} snapshots served, {log[-1]['seconds']} s")
    return {"scored": scored, "model": quantiles[scored], "retrains": log,
            "period": {"start": start.isoformat(), "end": end.isoformat()}}


def evaluate(prep: Prepared, played: Mapping[str, Any], config: BacktestConfig,
             methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Score the replay and the baselines on the same snapshots."""
    scored = played["scored"]
    all_methods = {"model": played["model"]} | {k: v[scored] for k, v in prep.baselines.items()}
    order = [m for m in ("model", "oracle", "recent_median_14d", "recent_median_28d",
                         "global_median_28d", "promise", "carrier_estimate") if m in all_methods]
    if methods is not None:
        order = [m for m in order if m in methods]
    dates = {"promise": prep.promised_day[scored]}
    if "carrier_estimate" in all_methods:
        dates["carrier_estimate"] = prep.estimate_day[scored]
    stage = prep.stage[scored]
    since_label = (prep.snap_s[scored] - prep.label_s[scored]) / 3600.0
    survivors = (stage == "between_scans") & (since_label > SURVIVOR_HOURS)
    result = score({m: all_methods[m] for m in order}, prep.y[scored], prep.snap_s[scored],
                   prep.zones[scored], stage, prep.month[scored], prep.route[scored], dates,
                   slices={"survivors_48h": survivors})
    return {"methods": order, "config": config.describe(), "period": played["period"],
            "n_parcels": int(len(np.unique(prep.rows[scored]))),
            "n_snapshots": int(len(scored)), "retrains": played["retrains"], **result,
            "daily": daily(prep, scored, played["model"])}


def daily(prep: Prepared, scored: np.ndarray, quantiles: np.ndarray) -> dict[str, Any]:
    """The model at handover by UTC day of the snapshot: p50 MAE and coverage, overall and
    per carrier where there are carriers (how fast the window recovers after a change)."""
    head = prep.stage[scored] == HEADLINE_STAGE
    rows, q = scored[head], quantiles[head]
    y = prep.y[rows]
    day = np.asarray(pd.to_datetime(prep.snap_s[rows], unit="s").strftime("%Y-%m-%d"))
    carrier = prep.X["carrier"].to_numpy()[rows].astype(str)
    inside = (y >= q[:, 0]) & (y <= q[:, 2])
    err = np.abs(q[:, 1] - y) / 24.0
    out: dict[str, Any] = {}
    for name in ["all"] + sorted(set(carrier.tolist()) - {"unknown"}):
        mask = np.ones(len(rows), dtype=bool) if name == "all" else carrier == name
        frame = pd.DataFrame({"day": day[mask], "inside": inside[mask], "err": err[mask]})
        g = frame.groupby("day")
        out[name] = {d: {"n": int(n), "coverage": float(c), "mae_days": float(e)}
                     for d, n, c, e in zip(g.size().index, g.size(), g["inside"].mean(),
                                           g["err"].mean(), strict=True)}
    return out


def run_backtest(shipments: pd.DataFrame, events: pd.DataFrame,
                 config: BacktestConfig | None = None, progress: Progress | None = None
                 ) -> dict[str, Any]:
    """Prepare, replay and score one history with one configuration."""
    config = config or BacktestConfig()
    prep = prepare(shipments, events, progress=progress)
    return evaluate(prep, replay(prep, config, progress), config)


def main(argv: list[str] | None = None) -> int:
    """Command line (see ``--help``); returns the exit code (0 ok, 2 bad arguments)."""
    args = build_parser().parse_args(argv)
    say: Progress = (lambda _m: None) if args.quiet else (
        lambda m: print(f"[backtest] {m}", file=sys.stderr, flush=True))
    config = config_from_args(args)
    shipments, events, data = load_history(args)
    tic = time.perf_counter()
    prep = prepare(shipments, events, progress=say)
    try:
        played = replay(prep, config, say)
    except ValueError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    result = evaluate(prep, played, config) | {"data": data,
                                               "seconds": round(time.perf_counter() - tic, 1)}
    print(table(result, args.stage))
    if args.json_out:
        write_json(result, args.json_out)
    if args.report:
        write_json(result, f"{args.report}/result.json")
        plots = write_plots(result, args.report,
                            HEADLINE_STAGE if args.stage == "all" else args.stage)
        write_html(result, args.report, plots, args.stage)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
