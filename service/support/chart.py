"""The ETA windows drawn against the promised date: geometry for a small server-rendered SVG
(templates/pages/support/_chart.html.j2), no script, readable as text by a screen reader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from service.store.etas import EtaRecord

WIDTH, LEFT, RIGHT, ROW, TOP = 640, 110, 16, 34, 8
MAX_TICKS = 10


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    x10: float
    x50: float
    x90: float
    text: str  # the window in words (the bar's <title>)


@dataclass(frozen=True)
class Marker:
    label: str
    x: float
    kind: str  # promised | now | delivered


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    axis_y: float
    bars: list[Bar]
    markers: list[Marker]
    ticks: list[tuple[float, str]]
    summary: str


def _day_end(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def _fmt(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%a %b %d %H:%M")


def eta_chart(first: EtaRecord | None, current: EtaRecord | None, promised: date | None,
              now: datetime, delivered_at: datetime | None, zone: str) -> Chart | None:
    """The first and current windows, the end of the promised day, now and the delivery."""
    windows = [(name, eta) for name, eta in (("first shown", first), ("current", current))
               if eta is not None]
    if first is not None and current is not None and first.id == current.id:
        windows = [("first = current", first)]
    if not windows:
        return None
    tz = ZoneInfo(zone)
    points = [t for _, eta in windows for t in (eta.eta_p10, eta.eta_p90)] + [now]
    markers_at: list[tuple[str, datetime, str]] = [("now", now, "now")]
    if promised is not None:
        end = _day_end(promised, tz)
        points.append(end)
        markers_at.append((f"promised {promised.isoformat()}", end, "promised"))
    if delivered_at is not None:
        points.append(delivered_at)
        markers_at.append(("delivered", delivered_at, "delivered"))
    start_day = min(points).astimezone(tz).date()
    end_day = max(points).astimezone(tz).date() + timedelta(days=1)
    start, stop = datetime.combine(start_day, time(0), tzinfo=tz), _day_end(end_day, tz)
    span = (stop - start).total_seconds()
    usable = WIDTH - LEFT - RIGHT

    def x(at: datetime) -> float:
        return round(LEFT + usable * (at - start).total_seconds() / span, 1)

    bars = [Bar(name, TOP + i * ROW, x(eta.eta_p10), x(eta.eta_p50), x(eta.eta_p90),
                f"{name}: {_fmt(eta.eta_p10, tz)} to {_fmt(eta.eta_p90, tz)}, likely "
                f"{_fmt(eta.eta_p50, tz)}")
            for i, (name, eta) in enumerate(windows)]
    days = (end_day - start_day).days + 1
    every = max(1, -(-days // MAX_TICKS))
    ticks = [(x(datetime.combine(start_day + timedelta(days=d), time(0), tzinfo=tz)),
              (start_day + timedelta(days=d)).strftime("%b %d"))
             for d in range(0, days, every)]
    axis_y = TOP + len(bars) * ROW + 4
    summary = "; ".join([b.text for b in bars] + [
        f"{label} {_fmt(at, tz)}" for label, at, _ in markers_at])
    return Chart(WIDTH, int(axis_y + 22), LEFT, axis_y, bars,
                 [Marker(label, x(at), kind) for label, at, kind in markers_at], ticks, summary)
