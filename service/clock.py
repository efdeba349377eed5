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
    """Simulated time: `sim_start` at real epoch second `real_anchor`, running `speed`x.

    Several processes given the same three numbers agree on "now" without talking.
    """

    def __init__(self, sim_start: datetime, real_anchor: float, speed: float) -> None:
        if sim_start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start")
        if speed <= 0:
            raise ValueError("ScaledClock speed must be positive")
        self.sim_start = sim_start.astimezone(UTC)
        self.real_anchor = real_anchor
        self.speed = speed

    def now(self) -> datetime:
        elapsed = (time.time() - self.real_anchor) * self.speed
        return self.sim_start + timedelta(seconds=elapsed)

    def real_seconds_until(self, when: datetime) -> float:
        """How many wall-clock seconds until simulated time reaches `when`."""
        return max(0.0, (when - self.now()).total_seconds() / self.speed)
