"""An async token bucket, so a burst of jobs does not exceed a provider's sending rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Allow `rate` acquisitions per second on average, with bursts of up to `burst`.

    Implemented as GCRA (the virtual-scheduling form of a token bucket): each caller
    reserves the next slot synchronously, then sleeps until it. Reservation before
    sleeping keeps callers in FIFO order without a lock. `clock` (a monotonic clock in
    seconds) and `sleep` are injectable for tests.
    """

    def __init__(self, rate: float, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._tat = 0.0  # theoretical arrival time of the next conforming request

    def reserve(self) -> float:
        """Claim the next slot; returns how many seconds to wait before using it."""
        now = self._clock()
        tat = max(self._tat, now)
        allowed_at = tat - self._tolerance
        self._tat = tat + self._interval
        return max(0.0, allowed_at - now)

    async def acquire(self) -> None:
        """Wait for a slot."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)
