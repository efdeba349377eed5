"""The backtest's command line: arguments → history frames and a :class:`BacktestConfig`
(``main`` lives in :mod:`predictor.backtest`, so ``python -m predictor.backtest`` and the
service's ``parcelcast backtest`` both call :func:`predictor.backtest.main`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from predictor.calibration import COHORT_HALF_LIFE_DAYS, LEVELS, WINDOW_DAYS
from predictor.features import FEATURES
from predictor.fitting import FitOptions

if TYPE_CHECKING:
    from predictor.backtest import BacktestConfig

# One thread: on a shared 2-core machine XGBoost's two OpenMP threads wait on each other
# (a fit took 5x longer with 2 than with 1 while other jobs ran), and two backtests can
# run side by side.
BACKTEST_NTHREAD = 1


def load_history(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The shipments/events frames the arguments name, and a description of them."""
    if args.format == "simulated":
        from predictor.simulator import simulate

        change = parse_regime_change(args.regime_change, args.days)
        start = datetime.fromisoformat(args.sim_start)
        history = simulate(args.shipments, args.days, start, args.seed, regime_change=change)
        return history.shipments, history.events, {
            "format": "simulated", "shipments": args.shipments, "days": args.days,
            "seed": args.seed, "sim_start": args.sim_start,
            "regime_change": None if change is None else list(change)}
    from predictor.olist import OLIST, OLIST_PATH, load_csv

    if args.format == "olist":
        path = args.history or str(OLIST_PATH)
        shipments, events, errors = load_csv(path, OLIST.mapping, args.tz or OLIST.tz,
                                             defaults=OLIST.defaults)
    else:
        if not args.history or not args.mapping:
            raise SystemExit("--format custom needs --history FILE and --mapping JSON")
        text = args.mapping
        mapping = json.loads(open(text).read() if not text.lstrip().startswith("{") else text)
        shipments, events, errors = load_csv(args.history, mapping, args.tz or "UTC")
        path = args.history
    return shipments, events, {"format": args.format, "history": str(path),
                               "rows_rejected": len(errors)}


def parse_regime_change(text: str | None, days: int) -> tuple[str, int, float] | None:
    """'CARRIER:DAY:FACTOR' (or the bare flag: ups from mid-history, 1.5x slower)."""
    if text is None:
        return None
    if text == "default":
        return ("ups", days // 2, 1.5)
    carrier, day, factor = text.split(":")
    return (carrier, int(day), float(factor))


def parse_every(text: str) -> float | None:
    """'7d' / '30d' / '12h' / 'never' → days (None for never)."""
    if text == "never":
        return None
    if text.endswith("h"):
        return float(text[:-1]) / 24.0
    return float(text.rstrip("d"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m predictor.backtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--history", help="history CSV (olist: default the bundled file)")
    p.add_argument("--format", choices=("olist", "custom", "simulated"), default="olist")
    p.add_argument("--mapping", help="custom: JSON mapping (inline or a file)")
    p.add_argument("--tz", help="zone of naive CSV times")
    p.add_argument("--start", help="first label day scored (default: first month with "
                                   "1,000 deliveries known)")
    p.add_argument("--end", help="labels before this are scored (default: all)")
    p.add_argument("--retrain-every", default="7d", help="7d | 30d | never")
    p.add_argument("--recalibrate-every", default="1d")
    p.add_argument("--window-days", type=float, default=WINDOW_DAYS)
    p.add_argument("--levels", type=_levels, default=LEVELS, metavar="LO,MID,HI",
                   help="calibration levels of the p10 / p50 / p90 errors "
                        "(default: predictor.calibration.LEVELS)")
    p.add_argument("--rounds", type=int, default=None,
                   help="boosting rounds (default: production's, predictor.train)")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--nthread", type=int, default=BACKTEST_NTHREAD)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="an XGBoost parameter over the defaults (repeatable), e.g. max_depth=6")
    p.add_argument("--base-margin", choices=("littles_law_v1", "off"), default=None)
    p.add_argument("--half-life-days", type=float, default=None, help="recency weighting")
    p.add_argument("--no-half-life", action="store_true", help="no recency weighting")
    p.add_argument("--correction", choices=("on", "off"), default=None)
    p.add_argument("--min-label-age-days", type=float, default=None,
                   help="leave parcels labelled in the last N days out of each fit")
    p.add_argument("--cohort-half-life-days", type=_half_life, default=None,
                   help="recency weighting of the calibration cohort, 'none' for a flat "
                        "window (default: predictor.calibration.COHORT_HALF_LIFE_DAYS)")
    p.add_argument("--drop-features", default="", help="comma-separated feature names")
    p.add_argument("--shipments", type=int, default=30_000)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sim-start", default="2024-08-01T00:00:00+00:00")
    p.add_argument("--regime-change", nargs="?", const="default", default=None,
                   help="CARRIER:DAY:FACTOR (bare flag: ups:<days/2>:1.5)")
    p.add_argument("--stage", default="first_scan",
                   help="stage of the monthly table (all: one table per stage)")
    p.add_argument("--json", dest="json_out", help="write the result as JSON here")
    p.add_argument("--report", help="folder for the plots (and result.json)")
    p.add_argument("--quiet", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> BacktestConfig:
    """The :class:`BacktestConfig` the command line asks for (unset: the defaults)."""
    base = FitOptions()
    half_life = base.half_life_days
    if args.half_life_days is not None:
        half_life = args.half_life_days
    if args.no_half_life:
        half_life = None
    dropped = {f.strip() for f in args.drop_features.split(",") if f.strip()}
    unknown = dropped - set(FEATURES)
    if unknown:
        raise SystemExit(f"unknown features: {sorted(unknown)}")
    options = replace(
        base, half_life_days=half_life,
        base_margin=(base.base_margin if args.base_margin is None
                     else None if args.base_margin == "off" else args.base_margin),
        correction=base.correction if args.correction is None else args.correction == "on",
        features=tuple(f for f in base.features if f not in dropped),
        min_label_age_days=(base.min_label_age_days if args.min_label_age_days is None
                            else args.min_label_age_days))
    from predictor.backtest import BacktestConfig

    return BacktestConfig(
        retrain_every_days=parse_every(args.retrain_every),
        recalibrate_every_days=parse_every(args.recalibrate_every) or 1.0,
        window_days=args.window_days,
        levels=args.levels,
        cohort_half_life_days=(
            COHORT_HALF_LIFE_DAYS if args.cohort_half_life_days is None
            else None if args.cohort_half_life_days == "none"
            else float(args.cohort_half_life_days)),
        **({} if args.rounds is None else {"rounds": args.rounds}),
        params={"nthread": args.nthread, **_params(args.param),
                **({} if args.learning_rate is None else {"learning_rate": args.learning_rate})},
        options=options,
        start=None if args.start is None else _utc(args.start),
        end=None if args.end is None else _utc(args.end))


def _half_life(text: str) -> str | float:
    """A half-life in days, or 'none' (a flat cohort)."""
    if text.strip().lower() in ("none", "off", "flat"):
        return "none"
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("a half-life in days > 0, or 'none'")
    return value


def _levels(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3 or not all(0.0 < x < 1.0 for x in parts) or sorted(parts) != parts:
        raise argparse.ArgumentTypeError("three increasing levels in (0, 1), e.g. 0.12,0.5,0.92")
    return (parts[0], parts[1], parts[2])


def _utc(text: str) -> datetime:
    ts = pd.Timestamp(text)
    out: datetime = (ts.tz_localize(UTC) if ts.tzinfo is None
                     else ts.tz_convert(UTC)).to_pydatetime()
    return out


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            out[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            out[key.strip()] = text
    return out
