"""The one injectable clock. Everything that needs "now" asks a Clock.

Tests use ManualClock; the demo runs every process on the same ScaledClock
(an accelerated simulated time anchored to one real instant), so days replay in minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware time")
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class ScaledClock:
    """Simulated time: `sim_start` at real epoch second `real_anchor` (and before it),
    running `speed`x from it, and at real speed from the simulated instant `realtime_from` on
    (if given).

    Several processes given the same numbers agree on "now" without talking.
    """

    def __init__(self, sim_start: datetime, real_anchor: float, speed: float,
                 realtime_from: datetime | None = None) -> None:
        if sim_start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if speed <= 0:
            raise ValueError("ScaledClock speed must be positive")
        if realtime_from is not None and realtime_from.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware realtime_from")
        self.sim_start = sim_start.astimezone(UTC)
        self.real_anchor = real_anchor
        self.speed = speed
        self.realtime_from = realtime_from.astimezone(UTC) if realtime_from else None

    def now(self) -> datetime:
        return self.at(time.time())

    def at(self, real: float) -> datetime:
        """Simulated time at the real epoch second `real`: `sim_start` until the anchor (the
        processes that start before it, and the work they do then, see the start, not a
        time running backwards at `speed` before it)."""
        simulated = self.sim_start + timedelta(
            seconds=max(real - self.real_anchor, 0.0) * self.speed)
        if self.realtime_from is None or simulated <= self.realtime_from:
            return simulated
        # Past the switch: one simulated second per real second from the real instant
        # the accelerated clock reached it.
        switched_at = self.real_anchor + (
            (self.realtime_from - self.sim_start).total_seconds() / self.speed)
        return self.realtime_from + timedelta(seconds=real - switched_at)

    def real_seconds_until(self, when: datetime) -> float:
        """How many wall-clock seconds until simulated time reaches `when`."""
        real = time.time()
        now = self.at(real)
        if when <= now:
            return 0.0
        held = max(self.real_anchor - real, 0.0)  # the clock stands until its anchor
        if self.realtime_from is None or when <= self.realtime_from:
            return held + (when - now).total_seconds() / self.speed
        fast = max(0.0, (self.realtime_from - now).total_seconds()) / self.speed
        return held + fast + (when - max(now, self.realtime_from)).total_seconds()
