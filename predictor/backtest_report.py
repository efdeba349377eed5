"""Scoring a walk-forward replay: metrics per method, stage, month and segment; the stdout
table; the JSON; the plots.

Metrics of one method on a set of delivered snapshots (hours remaining p10/p50/p90):

* ``mae_days``: mean |p50 − actual| in days; ``bias_days``: mean (p50 − actual), positive
  when the ETA was later than the delivery (pessimistic);
* ``coverage``: share of deliveries inside [p10, p90]; ``width_days``: mean p90 − p10;
* ``by_p90_date`` / ``by_p50_date``: share delivered on or before the local calendar date
  (customer's zone) of the p90 / p50; for a date baseline (the promise, the carrier's
  estimate) both are "on or before that date".

A method is scored only where its p50 is known (``n`` says on how many snapshots).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictor.calendar import utc_to_local

Metrics = dict[str, float | int | None]
STAGE_NAMES = {"label": "label", "first_scan": "handover (first scan)", "later": "later scans",
               "between_scans": "between scans", "all": "all stages",
               "survivors_48h": "between scans, over 48 h after the label"}
# The slice of the parcels already long in flight when an ETA is asked for (issue #14):
# between-scans snapshots more than this many hours after the label.
SURVIVOR_HOURS = 48.0
HEADLINE_STAGE = "first_scan"


def local_days(as_of_s: np.ndarray, hours: np.ndarray, zones: np.ndarray) -> np.ndarray:
    """Local calendar day (datetime64[D]) of ``as_of + hours`` in each row's zone."""
    us = np.round((as_of_s + np.nan_to_num(hours) * 3600.0) * 1e6).astype(np.int64)
    return utc_to_local(us.astype("datetime64[us]").astype("datetime64[ns]"),
                        zones).astype("datetime64[D]")


def metrics(pred: np.ndarray, y: np.ndarray, delivered_day: np.ndarray,
            p50_day: np.ndarray, p90_day: np.ndarray) -> Metrics:
    """See the module docstring; ``pred`` (n, 3) hours remaining, ``y`` actual hours."""
    ok = np.isfinite(pred[:, 1]) & np.isfinite(y)
    if not ok.any():
        return {"n": 0}
    p, t = pred[ok], y[ok]
    err = (p[:, 1] - t) / 24.0
    out: Metrics = {"n": int(ok.sum()), "mae_days": float(np.mean(np.abs(err))),
                    "bias_days": float(np.mean(err)),
                    "by_p50_date": float(np.mean(delivered_day[ok] <= p50_day[ok])),
                    "by_p90_date": float(np.mean(delivered_day[ok] <= p90_day[ok])),
                    "coverage": None, "width_days": None}
    if np.isfinite(p[:, 0]).all() and np.isfinite(p[:, 2]).all():
        out["coverage"] = float(np.mean((t >= p[:, 0]) & (t <= p[:, 2])))
        out["width_days"] = float(np.mean(p[:, 2] - p[:, 0]) / 24.0)
        out["below_p10"] = float(np.mean(t < p[:, 0]))
        out["below_p50"] = float(np.mean(t <= p[:, 1]))
        out["below_p90"] = float(np.mean(t <= p[:, 2]))
    return out


def score(methods: Mapping[str, np.ndarray], y: np.ndarray, as_of_s: np.ndarray,
          zones: np.ndarray, stage: np.ndarray, month: np.ndarray, segment: np.ndarray,
          dates: Mapping[str, np.ndarray], slices: Mapping[str, np.ndarray] | None = None
          ) -> dict[str, Any]:
    """Metrics of every method overall, per stage, per month × stage, and per segment at
    the headline stage. ``dates``: the local date a date-valued method stands for;
    ``slices``: more named row masks scored like a stage (e.g. ``survivors_48h``)."""
    delivered_day = local_days(as_of_s, y, zones)
    days: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, pred in methods.items():
        if name in dates:
            days[name] = (dates[name], dates[name])
        else:
            days[name] = (local_days(as_of_s, pred[:, 1], zones),
                          local_days(as_of_s, pred[:, 2], zones))

    def block(mask: np.ndarray) -> dict[str, Metrics]:
        return {name: metrics(pred[mask], y[mask], delivered_day[mask], days[name][0][mask],
                              days[name][1][mask]) for name, pred in methods.items()}

    masks = {s: stage == s for s in ("label", "first_scan", "later", "between_scans")}
    masks |= dict(slices or {})
    masks = {name: mask for name, mask in masks.items() if mask.any()}
    everything = np.ones(len(y), dtype=bool)
    out: dict[str, Any] = {
        "overall": {"all": block(everything)} | {s: block(mask) for s, mask in masks.items()},
        "by_month": {}, "by_segment": {},
    }
    for m in sorted(set(month.tolist())):
        in_month = month == m
        out["by_month"][m] = {"all": block(in_month)} | {
            s: block(in_month & mask) for s, mask in masks.items()}
    head = stage == HEADLINE_STAGE
    for seg in sorted(set(segment[head].tolist())):
        mask = head & (segment == seg)
        if mask.sum() >= 50:
            out["by_segment"][seg] = block(mask)
    return out


def table(result: Mapping[str, Any], stage: str = HEADLINE_STAGE) -> str:
    """Markdown tables: per month and overall at ``stage`` (``"all"``: one such table per
    stage present), then overall per stage."""
    methods = list(result["methods"])
    stages = ([s for s in STAGE_NAMES if s in result["overall"]] if stage == "all"
              else [stage])
    lines: list[str] = []
    for one in stages:
        lines += _monthly(result, one, methods) + [""]
    lines += ["### overall by stage", "",
              "| stage | method | n | p50 MAE (d) | bias (d) | coverage | width (d) | "
              "by p50 date | by p90 date |", "|---|---|---|---|---|---|---|---|---|"]
    for st, block in result["overall"].items():
        for m in methods:
            x = block.get(m, {})
            if not x.get("n"):
                continue
            lines.append(f"| {STAGE_NAMES.get(st, st)} | {m} | {x['n']:,} | "
                         f"{x['mae_days']:.2f} | {x['bias_days']:+.2f} | {_f(x.get('coverage'))} | "
                         f"{_f(x.get('width_days'), 2)} | {_f(x.get('by_p50_date'))} | "
                         f"{_f(x.get('by_p90_date'))} |")
    return "\n".join(lines)


def _monthly(result: Mapping[str, Any], stage: str, methods: Sequence[str]) -> list[str]:
    lines = [f"### {STAGE_NAMES.get(stage, stage)}: p50 MAE in days (coverage p10-p90, "
             "share by p90 date)", "",
             "| month | n | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    rows = list(result["by_month"].items()) + [("overall", result["overall"])]
    for month, stages in rows:
        block = stages.get(stage, {})
        n = block.get("model", {}).get("n", 0)
        if not n:
            continue
        cells = [_cell(block.get(m, {})) for m in methods]
        lines.append(f"| {month} | {n:,} | " + " | ".join(cells) + " |")
    return lines


def write_html(result: Mapping[str, Any], folder: str | Path, plots: Sequence[Path],
               stage: str = "all") -> Path:
    """``index.html`` in ``folder``: the plots, then the tables of :func:`table`."""
    import html

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>Parcelcast walk-forward backtest</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 6px;"
             "text-align:right}img{max-width:100%}</style></head><body>",
             "<h1>Walk-forward backtest</h1>",
             f"<p>Period {html.escape(str(result.get('period', {}).get('start')))} to "
             f"{html.escape(str(result.get('period', {}).get('end')))}; "
             f"{result.get('n_parcels', 0):,} parcels, {result.get('n_snapshots', 0):,} "
             "snapshots scored. Cells: p50 MAE in days (p10-p90 coverage, share delivered "
             "by the p90 date).</p>"]
    parts += [f"<p><img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'></p>"
              for p in plots]
    in_table = False
    for line in table(result, stage).splitlines():
        if line.startswith("### "):
            parts.append(f"<h2>{html.escape(line[4:])}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            tag = "th" if not in_table else "td"
            if not in_table:
                parts.append("<table>")
                in_table = True
            parts.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
        elif in_table:
            parts.append("</table>")
            in_table = False
    if in_table:
        parts.append("</table>")
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page


def _cell(x: Mapping[str, Any]) -> str:
    if not x.get("n"):
        return "-"
    cov = x.get("coverage")
    extra = f"{cov:.2f}, " if cov is not None else ""
    return f"{x['mae_days']:.2f} ({extra}{x['by_p90_date']:.2f})"


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """The whole result as JSON (NaN as null)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(result), indent=1))
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_plots(result: Mapping[str, Any], folder: str | Path,
                stage: str = HEADLINE_STAGE) -> list[Path]:
    """MAE and coverage by month per method, the calibration curve, error by segment."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkits
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    methods: Sequence[str] = result["methods"]
    months = [m for m, st in result["by_month"].items() if st.get(stage, {}).get("model", {}).get("n")]
    written: list[Path] = []
    for key, title, name in (("mae_days", "p50 MAE (days)", "mae_by_month.png"),
                             ("coverage", "p10-p90 coverage", "coverage_by_month.png"),
                             ("by_p90_date", "share delivered by the p90 date",
                              "by_p90_date_by_month.png")):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(months)), 4))
        for m in methods:
            vals = [result["by_month"][mo][stage].get(m, {}).get(key) for mo in months]
            if any(v is not None for v in vals):
                ax.plot(months, [np.nan if v is None else v for v in vals], marker="o", label=m)
        if key == "coverage":
            ax.axhspan(0.78, 0.82, color="grey", alpha=0.2)
        ax.set_title(f"{title} at {STAGE_NAMES.get(stage, stage)}, by month")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=7)
        written.append(_save(fig, out / name))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for m in methods:
        x = result["overall"].get(stage, {}).get(m, {})
        if x.get("below_p10") is not None:
            ax.plot([0.1, 0.5, 0.9], [x["below_p10"], x["below_p50"], x["below_p90"]],
                    marker="o", label=m)
    ax.set_xlabel("nominal quantile")
    ax.set_ylabel("share delivered by it")
    ax.set_title(f"Calibration at {STAGE_NAMES.get(stage, stage)}")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "calibration.png"))
    segments = list(result["by_segment"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(segments) * 1.5), 4))
    width = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        vals = [result["by_segment"][s].get(m, {}).get("mae_days") or 0.0 for s in segments]
        ax.bar(np.arange(len(segments)) + k * width, vals, width, label=m)
    ax.set_xticks(np.arange(len(segments)) + 0.4 - width / 2)
    ax.set_xticklabels(segments, rotation=60, fontsize=7)
    ax.set_title(f"p50 MAE (days) by segment at {STAGE_NAMES.get(stage, stage)}")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "error_by_segment.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
