"""The morning data-quality report: counters (service.store.quality) turned into rates per
source and carrier, the worst offenders first, a rate above its threshold (settings) a warning.

Pure: no I/O. `parcelcast data-quality` prints it; the Prometheus rules in
docs/operations.md alert on the same rates from /metrics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from service.settings import Settings
from service.store.quality import Counted

GUESSED_BASES = ("naive_time:origin", "naive_time:utc_default")


@dataclass
class Line:
    """One source and carrier ("*": every carrier of the source) over the window."""

    source: str
    carrier: str
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rates: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    severity: float = 0.0  # the worst rate as a multiple of its threshold

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "carrier": self.carrier,
                "counts": dict(sorted(self.counts.items())),
                "rates": {k: round(v, 4) for k, v in self.rates.items()},
                "warnings": self.warnings, "severity": round(self.severity, 3)}


def thresholds(settings: Settings) -> dict[str, float]:
    return {"unknown_rate": settings.data_quality_unknown_rate,
            "rejected_rate": settings.data_quality_rejected_rate,
            "late_rate": settings.data_quality_late_rate,
            "after_delivery_rate": settings.data_quality_after_delivery_rate,
            "guessed_time_rate": settings.data_quality_guessed_time_rate}


def _rates(counts: dict[str, int]) -> tuple[dict[str, float], int, int]:
    accepted = counts.get("accepted", 0)
    received = accepted + counts.get("duplicate", 0) + counts.get("rejected", 0)
    rates: dict[str, float] = {}
    if received:
        rates["rejected_rate"] = counts.get("rejected", 0) / received
    if accepted:
        rates["unknown_rate"] = counts.get("unknown", 0) / accepted
        rates["late_rate"] = counts.get("late_24h", 0) / accepted
        rates["after_delivery_rate"] = counts.get("after_delivery", 0) / accepted
        rates["guessed_time_rate"] = sum(counts.get(b, 0) for b in GUESSED_BASES) / accepted
    return rates, accepted, received


def build(counted: Iterable[Counted], stale: dict[str, int], settings: Settings
          ) -> dict[str, Any]:
    """The report as plain data (what --json prints)."""
    lines: dict[tuple[str, str], Line] = {}
    for c in counted:
        # Every count goes into its source's "*" line; those naming a carrier into its own too.
        keys = [(c.source, c.carrier), (c.source, "*")] if c.carrier else [(c.source, "*")]
        for key in keys:
            lines.setdefault(key, Line(*key)).counts[c.measure] += c.count
    limits = thresholds(settings)
    for line in lines.values():
        rates, accepted, received = _rates(line.counts)
        line.rates = rates
        for name, rate in rates.items():
            base = received if name == "rejected_rate" else accepted
            if base < settings.data_quality_min_events:
                continue
            limit = limits[name]
            line.severity = max(line.severity, rate / limit if limit else float(rate > 0))
            if rate > limit:
                line.warnings.append(f"{name} {rate:.1%} > {limit:.1%}")
    ordered = sorted(lines.values(), key=lambda ln: (-ln.severity, -sum(ln.counts.values()),
                                                     ln.source, ln.carrier))
    warnings = [f"{ln.source} {ln.carrier}: {w}" for ln in ordered for w in ln.warnings]
    stale_days = settings.data_quality_stale_days
    warnings += [f"{carrier}: {n} tracker(s) without a scan for {stale_days:g} days"
                 for carrier, n in sorted(stale.items(), key=lambda kv: -kv[1]) if n]
    return {"lines": [ln.as_dict() for ln in ordered], "stale_trackers": stale,
            "thresholds": limits, "warnings": warnings}


def render(report: dict[str, Any], since: str) -> str:
    """The report as an operator reads it."""
    out = [f"Feed data quality since {since} (worst first)", ""]
    out.append("WARNINGS" if report["warnings"] else "No warnings.")
    out += [f"  ! {w}" for w in report["warnings"]]
    out.append("")
    header = (f"{'source':<24} {'carrier':<14} {'accepted':>9} {'dup':>7} {'rejected':>8} "
              f"{'unknown':>8} {'late24h':>8} {'afterdlv':>8} {'guessed':>8}")
    out += [header, "-" * len(header)]
    for line in report["lines"]:
        c, r = line["counts"], line["rates"]

        def pct(name: str, rates: dict[str, float] = r) -> str:
            return f"{rates[name]:.1%}" if name in rates else "-"

        out.append(f"{line['source'][:24]:<24} {line['carrier'][:14]:<14} "
                   f"{c.get('accepted', 0):>9} {c.get('duplicate', 0):>7} "
                   f"{c.get('rejected', 0):>8} {pct('unknown_rate'):>8} {pct('late_rate'):>8} "
                   f"{pct('after_delivery_rate'):>8} {pct('guessed_time_rate'):>8}")
    extra = [(ln["source"], ln["carrier"], m, n) for ln in report["lines"]
             for m, n in ln["counts"].items()
             if m.startswith("naive_time:") or m in ("webhook_notes", "estimate_before_shipment")]
    if extra:
        out += ["", "Also counted:"]
        out += [f"  {s} {c}: {m} {n}" for s, c, m, n in extra if c != "*"]
    if report["stale_trackers"]:
        out += ["", "Trackers without a scan:"]
        out += [f"  {k}: {v}" for k, v in report["stale_trackers"].items()]
    return "\n".join(out)
