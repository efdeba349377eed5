from __future__ import annotations

import asyncio

from workers.senders import RateLimiter


def test_gcra_schedule_with_a_fake_clock() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=10, burst=3, clock=lambda: now[0])
    waits = [limiter.reserve() for _ in range(6)]
    assert [round(w, 3) for w in waits] == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]
    now[0] += 10  # idle long enough: the burst is available again, not more
    assert [round(limiter.reserve(), 3) for _ in range(4)] == [0.0, 0.0, 0.0, 0.1]


async def test_concurrent_callers_wait_for_their_own_slots() -> None:
    now = [5.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    limiter = RateLimiter(rate=50, burst=1, clock=lambda: now[0], sleep=sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(26)))
    # The first goes at once; the others wait 20 ms more each: 50 per second, in order.
    assert slept == [round(0.02 * k, 6) for k in range(1, 26)]
