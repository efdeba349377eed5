"""`parcelcast models report`: one self-contained HTML page about a model in production —
live p50 MAE and p10–p90 coverage by week, calibration, error by segment, its latest drift
check, and the model card — with inline SVG plots (matplotlib), readable in any browser
without a network."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from service.settings import REPO_ROOT
from service.store import accuracy, eta_models
from service.store.accuracy import Calibration, DriftCheck, SegmentAccuracy

MODEL_CARD = REPO_ROOT / "docs" / "model-card.md"


class ReportData(msgspec.Struct, frozen=True, kw_only=True):
    """What the page shows, read from the store in one go."""

    version: str
    status: str
    created_at: datetime
    validation: dict[str, Any]
    weeks: list[SegmentAccuracy]
    carriers: list[SegmentAccuracy]
    services: list[SegmentAccuracy]
    stages: list[SegmentAccuracy]
    calibration: Calibration
    drift: DriftCheck | None


async def report_data(conn: asyncpg.Connection, version: str) -> ReportData | None:
    """The page's figures for `version` (None when there is no such model)."""
    model = next((m for m in await eta_models.list_all(conn) if m.version == version), None)
    if model is None:
        return None
    return ReportData(
        version=version, status=model.status, created_at=model.created_at,
        validation=dict(model.metrics.get("comparison", {}).get(version, {})),
        weeks=await accuracy.accuracy_by(conn, "week", version=version),
        carriers=await accuracy.accuracy_by(conn, "carrier", version=version),
        services=await accuracy.accuracy_by(conn, "service", version=version),
        stages=await accuracy.accuracy_by(conn, "stage", version=version),
        calibration=await accuracy.calibration(conn, version),
        drift=await accuracy.latest_drift(conn, version))


def write_report(data: ReportData, folder: Path, model_card: Path = MODEL_CARD) -> Path:
    """Write ``<folder>/<version>.html`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data.version}.html"
    card = model_card.read_text(encoding="utf-8") if model_card.exists() else ""
    path.write_text(render(data, card), encoding="utf-8")
    return path


def render(data: ReportData, model_card: str) -> str:
    e = html.escape
    scored = sum(w.scored for w in data.weeks)
    validation = data.validation
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>ETA model {e(data.version)}</title><style>{_CSS}</style></head><body>",
        f"<h1>ETA model <code>{e(data.version)}</code></h1>",
        f"<p>Status <b>{e(data.status)}</b>, registered {data.created_at:%Y-%m-%d %H:%M} UTC. "
        f"{scored} shown ETAs scored (the first ETA shown at each stage), judged at the "
        f"delivery or, for a parcel still out when the date shown ended, then, as a miss "
        f"({sum(w.still_out for w in data.weeks)} still out).",
    ]
    if validation.get("p50_mae_hours") is not None:
        parts.append(f" Validation at training: p50 MAE "
                     f"{validation['p50_mae_hours'] / 24:.2f} days, p10–p90 coverage "
                     f"{validation.get('coverage_p10_p90') or 0:.0%}.")
    parts.append("</p><h2>Live accuracy by week</h2>")
    if data.weeks:
        parts.append(_week_plot(data.weeks))
        parts.append(_table("week", data.weeks))
    else:
        parts.append("<p>No shown ETA judged yet.</p>")
    parts.append("<h2>Calibration</h2>")
    parts.append(_calibration_plot(data.calibration))
    parts.append("<h2>Error by segment</h2>")
    for title, rows in (("carrier", data.carriers), ("carrier:service", data.services),
                        ("stage", data.stages)):
        if rows:
            parts.append(f"<h3>By {e(title)}</h3>")
            parts.append(_segment_plot(rows, title))
            parts.append(_table(title, rows))
    parts.append("<h2>Drift</h2>")
    parts.append(_drift(data.drift))
    parts.append("<h2>Model card</h2><div class='card'>")
    parts.append(markdown_html(model_card) if model_card else "<p>(no model card)</p>")
    parts.append("</div></body></html>")
    return "".join(parts)


def _table(title: str, rows: Sequence[SegmentAccuracy]) -> str:
    head = (f"<table><tr><th>{html.escape(title)}</th><th>scored</th>"
            "<th>still out after the date shown</th><th>p50 MAE (days)</th>"
            "<th>p10–p90 coverage</th><th>on time by date shown</th><th>bias (days)</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(r.segment)}</td><td>{r.scored}</td><td>{r.still_out}</td>"
        f"<td>{r.mae_days:.2f}</td>"
        f"<td>{r.coverage:.0%}</td><td>{r.on_time_shown:.0%}</td><td>{r.bias_days:+.2f}</td>"
        "</tr>" for r in rows)
    return head + body + "</table>"


def _drift(drift: DriftCheck | None) -> str:
    if drift is None:
        return "<p>No drift check yet (workers run one every DRIFT_CHECK_EVERY_HOURS).</p>"
    e = html.escape
    alarms = ", ".join(drift.alarms) or "none"
    rows = "".join(f"<tr><td>{e(k)}</td><td>{v:.3f}</td></tr>"
                   for k, v in sorted(drift.feature_psi.items(), key=lambda kv: -kv[1]))
    live = (f"live p50 MAE {drift.live_mae_days:.2f} days"
            if drift.live_mae_days is not None else "no live scores")
    valid = (f"validation {drift.validation_mae_days:.2f} days"
             if drift.validation_mae_days is not None else "no validation figure")
    return (f"<p>As of {drift.as_of:%Y-%m-%d %H:%M} UTC, over {drift.inputs} recent inputs "
            f"and {drift.scored} live scores: {live} ({valid}). Alarms: <b>{e(alarms)}</b>."
            f"</p><table><tr><th>feature</th><th>PSI vs training</th></tr>{rows}</table>")


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return "<figure>" + text[text.index("<svg"):] + "</figure>"


def _figure(width: float = 7.0, height: float = 3.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkits
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _week_plot(weeks: Sequence[SegmentAccuracy]) -> str:
    fig, ax = _figure()
    labels = [w.segment for w in weeks]
    ax.plot(labels, [w.mae_days for w in weeks], marker="o", color="#0b6e4f",
            label="p50 MAE (days)")
    ax.set_ylabel("p50 MAE (days)")
    ax.set_ylim(bottom=0)
    other = ax.twinx()
    other.plot(labels, [w.coverage for w in weeks], marker="s", color="#b5651d",
               label="p10–p90 coverage")
    other.axhline(0.8, color="#b5651d", linestyle=":", linewidth=1)
    other.set_ylim(0, 1)
    other.set_ylabel("coverage (target 0.80)")
    ax.set_xlabel("week of delivery")
    ax.tick_params(axis="x", rotation=45)
    fig.legend(loc="upper left")
    return _svg(fig)


def _calibration_plot(cal: Calibration) -> str:
    if not cal.scored:
        return "<p>No delivered parcel scored yet.</p>"
    fig, ax = _figure(4.0, 4.0)
    nominal = [0.1, 0.5, 0.9]
    observed = [cal.below_p10, cal.below_p50, cal.below_p90]
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":", label="perfect")
    ax.plot(nominal, [v or 0.0 for v in observed], marker="o", color="#0b6e4f",
            label=f"live ({cal.scored} scored)")
    ax.set_xlabel("quantile shown")
    ax.set_ylabel("share delivered before it")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return _svg(fig) + (f"<p>Delivered before p10 {observed[0]:.0%}, before p50 "
                        f"{observed[1]:.0%}, by p90 {observed[2]:.0%} (nominal 10 %, 50 %, "
                        "90 %).</p>")


def _segment_plot(rows: Sequence[SegmentAccuracy], title: str) -> str:
    shown = list(rows)[:15]
    fig, ax = _figure(7.0, 0.4 * len(shown) + 1.0)
    ax.barh([r.segment for r in shown][::-1], [r.mae_days for r in shown][::-1],
            color="#0b6e4f")
    ax.set_xlabel(f"p50 MAE (days) by {title}")
    return _svg(fig)


def markdown_html(text: str) -> str:
    """A small Markdown subset as HTML: headings, paragraphs, lists, code blocks, tables
    (kept as preformatted text), inline code, bold and links."""
    out: list[str] = []
    paragraph: list[str] = []
    block: list[str] | None = None
    in_list = False

    def flush() -> None:
        nonlocal in_list
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if in_list:
            out.append("</ul>")
            in_list = False

    for line in text.splitlines():
        if line.startswith("```"):
            if block is None:
                flush()
                block = []
            else:
                out.append(f"<pre>{html.escape(chr(10).join(block))}</pre>")
                block = None
            continue
        if block is not None:
            block.append(line)
            continue
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped.startswith("|"):
            flush()
            out.append(f"<pre class='table'>{html.escape(stripped)}</pre>")
        elif re.match(r"^([-*]|\d+\.)\s+", stripped):
            if paragraph:
                out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
                paragraph.clear()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(re.sub(r'^([-*]|[0-9]+[.])[ ]+', '', stripped))}</li>")
        elif in_list and line.startswith((" ", "\t")):
            out[-1] = out[-1][:-5] + " " + _inline(stripped) + "</li>"
        else:
            if in_list:
                out.append("</ul>")
                in_list = False
            paragraph.append(stripped)
    if block is not None:
        out.append(f"<pre>{html.escape(chr(10).join(block))}</pre>")
    flush()
    return "\n".join(out).replace("</pre>\n<pre class='table'>", "\n")


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"<a href='\2'>\1</a>", text)


_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{border:1px solid #ccc;padding:.2rem .6rem;text-align:right}td:first-child,
th:first-child{text-align:left}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}
figure{margin:0}svg{max-width:100%;height:auto}.card{border-top:2px solid #0b6e4f}"""
