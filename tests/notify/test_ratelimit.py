from __future__ import annotations

import asyncio
import time

from workers.senders import RateLimiter


def test_gcra_schedule_with_a_fake_clock() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=10, burst=3, clock=lambda: now[0])
    waits = [limiter.reserve() for _ in range(6)]
    assert [round(w, 3) for w in waits] == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]
    now[0] += 10  # idle long enough: the burst is available again, not more
    assert [round(limiter.reserve(), 3) for _ in range(4)] == [0.0, 0.0, 0.0, 0.1]


async def test_holds_the_configured_rate() -> None:
    limiter = RateLimiter(rate=50, burst=1)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(26)))
    elapsed = time.monotonic() - started
    assert 0.48 <= elapsed < 0.8  # 25 intervals of 20 ms after the first
