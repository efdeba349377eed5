"""Every "now" comes from the injectable clock."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.clock import ManualClock, ScaledClock

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(r"datetime\.(now|utcnow|today)\(|date\.today\(|time\.time\(\)")
ALLOWED = {ROOT / "service" / "clock.py", ROOT / "service" / "settings.py"}


def test_no_code_reads_the_wall_clock_except_the_clock() -> None:
    offenders = []
    for folder in ("service", "workers", "predictor", "standins"):
        for path in (ROOT / folder).rglob("*.py"):
            if path in ALLOWED:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if FORBIDDEN.search(line) and "clock-ok" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_manual_clock_moves_only_when_told() -> None:
    start = datetime(2026, 11, 2, 12, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == start
    clock.advance(timedelta(hours=3))
    assert clock.now() == start + timedelta(hours=3)


def test_scaled_clocks_with_the_same_anchor_agree() -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    anchor = float(int(time.time()) - 10)  # ten real seconds ago (whole: exact sums)
    a = ScaledClock(start, real_anchor=anchor, speed=3600)
    b = ScaledClock(start, real_anchor=anchor, speed=3600)
    # Two processes asking at the same real instant get the same answer.
    assert a.at(anchor + 10) == b.at(anchor + 10)
    # Ten real seconds at 3600x is ten simulated hours.
    assert a.at(anchor + 10) == start + timedelta(hours=10)
    # now() reads the real time of the moment it is called (however long that takes).
    before = time.time()
    now = a.now()
    after = time.time()
    assert a.at(before) <= now <= a.at(after)


def test_scaled_clock_runs_at_real_speed_from_realtime_from() -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    clock = ScaledClock(start, real_anchor=1000.0, speed=3600,
                        realtime_from=start + timedelta(hours=5))
    assert clock.at(1003.0) == start + timedelta(hours=3)  # still accelerated
    assert clock.at(1005.0) == start + timedelta(hours=5)  # the switch
    # Past it, a real day is a simulated day (not 3,600 of them).
    assert clock.at(1005.0 + 86400) == start + timedelta(hours=5, days=1)


def test_scaled_clock_stands_at_its_start_until_the_anchor() -> None:
    # The demo anchors its clock a little ahead, so its processes start and the parcels in
    # flight get their ETAs first: those ETAs are computed as of the start, not as of a
    # time hours before it (at 7,200x, 20 real seconds early would be 40 hours).
    start = datetime(2026, 11, 2, tzinfo=UTC)
    clock = ScaledClock(start, real_anchor=1000.0, speed=7200)
    assert clock.at(980.0) == start
    assert clock.at(1000.0) == start
    assert clock.at(1001.0) == start + timedelta(hours=2)
