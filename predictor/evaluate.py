"""Scoring ETA forecasts: per snapshot, per stage and per carrier, model vs baselines.

Every method hands in hours remaining (p10, p50, p90) for the same snapshots. Metrics:

* ``mae_hours`` / ``mae_days`` of the p50;
* ``coverage_p10_p90``: share of actual deliveries inside the window (target ~0.80);
* ``on_or_before_p90_date``: share delivered on or before the p90's local date in the
  customer's timezone (for date baselines, the promise and the carrier's estimate: on or
  before that date);
* the error split: ``early_share`` (parcel came before the p50) and ``late_share``,
  with the mean hours of each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.calendar import utc_to_local

Metrics = dict[str, float | int | None]


def metrics(pred: np.ndarray, y: np.ndarray, delivered_day: np.ndarray,
            p90_day: np.ndarray | None) -> Metrics:
    """Metrics of one method on aligned snapshots (see module docstring)."""
    ok = np.isfinite(pred[:, 1]) & np.isfinite(y)
    if not ok.any():
        return {"n": 0}
    p, t = pred[ok], y[ok]
    err = p[:, 1] - t  # positive: predicted later than reality (parcel came early)
    out: Metrics = {
        "n": int(ok.sum()),
        "mae_hours": float(np.mean(np.abs(err))),
        "mae_days": float(np.mean(np.abs(err)) / 24.0),
        "bias_hours": float(np.mean(err)),
        "early_share": float(np.mean(err > 0)),
        "late_share": float(np.mean(err < 0)),
        "mean_early_hours": float(err[err > 0].mean()) if (err > 0).any() else 0.0,
        "mean_late_hours": float(-err[err < 0].mean()) if (err < 0).any() else 0.0,
        "coverage_p10_p90": None,
        "on_or_before_p90_date": None,
    }
    if np.isfinite(p[:, 0]).all() and np.isfinite(p[:, 2]).all():
        out["coverage_p10_p90"] = float(np.mean((t >= p[:, 0]) & (t <= p[:, 2])))
        out["below_p10"] = float(np.mean(t < p[:, 0]))
        out["below_p50"] = float(np.mean(t <= p[:, 1]))
        out["below_p90"] = float(np.mean(t <= p[:, 2]))
    if p90_day is not None:
        out["on_or_before_p90_date"] = float(np.mean(delivered_day[ok] <= p90_day[ok]))
    return out


def local_day_after(as_of: pd.Series, hours: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """Local calendar day (datetime64[D]) of ``as_of + hours`` in each row's zone."""
    base = pd.DatetimeIndex(as_of).tz_convert("UTC").tz_localize(None).as_unit("ns").values
    h = np.nan_to_num(hours, nan=0.0)
    when = base + (h * 3.6e12).astype("timedelta64[ns]")
    return utc_to_local(when, zones).astype("datetime64[D]")


def evaluate_methods(methods: Mapping[str, np.ndarray], y: np.ndarray, meta: pd.DataFrame,
                     zones: np.ndarray, promised_day: np.ndarray | None = None, *,
                     dates: Mapping[str, np.ndarray] | None = None,
                     subsets: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Report for several methods on the same snapshots: overall, by stage, by carrier,
    plus calibration (nominal vs empirical quantile coverage) for each method.

    ``dates``: the local date each date-valued method (a baseline that is a date, like
    the carrier's estimate) stands for; ``promised_day`` is the promise's. A method scores
    only the snapshots where its p50 is known, and says how many (``n``). ``subsets``:
    more named blocks of snapshots (e.g. those where the carrier gave an estimate), with
    every method on the same rows."""
    delivered_day = local_day_after(meta["as_of"], y, zones)
    given = {"promise": promised_day, **(dates or {})}
    days: dict[str, np.ndarray | None] = {}
    for name, pred in methods.items():
        if name in given:
            days[name] = given[name]
        else:
            days[name] = local_day_after(meta["as_of"], pred[:, 2], zones)

    def block(mask: np.ndarray) -> dict[str, Metrics]:
        return {name: metrics(pred[mask], y[mask], delivered_day[mask],
                              None if (day := days[name]) is None else day[mask])
                for name, pred in methods.items()}

    everything = np.ones(len(y), dtype=bool)
    stages = meta["stage"].astype(str).to_numpy()
    carriers = meta["carrier"].astype(str).to_numpy()
    report: dict[str, Any] = {
        "n_snapshots": int(len(y)),
        "n_shipments": int(meta["shipment_id"].nunique()),
        "period": {"from": str(meta["as_of"].min()), "to": str(meta["as_of"].max())},
        "overall": block(everything),
        "by_stage": {s: block(stages == s) for s in pd.unique(stages)},
        "by_carrier": {c: block(carriers == c) for c in sorted(pd.unique(carriers))},
    }
    if subsets:
        report["subsets"] = {name: {"n_snapshots": int(mask.sum()), **block(mask)}
                             for name, mask in subsets.items()}
    report["calibration"] = {
        name: {"nominal": [0.1, 0.5, 0.9, 0.8],
               "empirical": [report["overall"][name].get(k) for k in
                             ("below_p10", "below_p50", "below_p90", "coverage_p10_p90")]}
        for name in methods if report["overall"][name].get("coverage_p10_p90") is not None
    }
    return report


def write_report(report: Mapping[str, Any], folder: str | Path) -> list[Path]:
    """Write ``report.json`` and PNG plots (calibration, error by stage, by carrier)."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkits: safe in workers and CI
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps({k: v for k, v in report.items() if k != "holdout_model"},
                                     indent=2, default=str))
    evaluation = report.get("evaluation", report)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for name, cal in evaluation.get("calibration", {}).items():
        pts = [(n, e) for n, e in zip(cal["nominal"], cal["empirical"], strict=True)
               if e is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("nominal quantile / coverage")
    ax.set_ylabel("empirical")
    ax.set_title("Calibration")
    ax.legend()
    written.append(_save(fig, out / "calibration.png"))

    for key, title, name in (("by_stage", "p50 MAE by stage (hours)", "error_by_stage.png"),
                             ("by_carrier", "p50 MAE by carrier (hours)",
                              "error_by_carrier.png")):
        groups = evaluation.get(key, {})
        labels = list(groups)
        methods = sorted({m for g in groups.values() for m in g})
        fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(labels)), 4))
        width = 0.8 / max(len(methods), 1)
        for k, m in enumerate(methods):
            vals = [groups[g].get(m, {}).get("mae_hours") or 0.0 for g in labels]
            ax.bar(np.arange(len(labels)) + k * width, vals, width, label=m)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
        ax.set_xticklabels(labels)
        ax.set_title(title)
        ax.legend()
        written.append(_save(fig, out / name))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
