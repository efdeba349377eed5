"""Twilio slow (answers after our timeout, having taken the message), then failing with 500s,
then with 429s and Retry-After, while scans keep coming.

A send without an answer in time may have reached Twilio, so the next attempt asks Twilio
(its message list) before sending again; 5xx and 429 are retried on the backoff schedule.
Every SMS reaches Twilio exactly once. The worker runs with TWILIO_TIMEOUT_S=2 on a clock 20x
faster than real time, so the retry schedule (5 s, 30 s, ... of business time) passes in
seconds."""

from __future__ import annotations

from pathlib import Path

from tests.drills.conftest import MakeStack, Report
from tests.drills.harness import Shop, check, healthy, settled, start_workers, until

TIMEOUT_S = 2.0


async def test_twilio_slow_then_failing(make_stack: MakeStack, tmp_path: Path,
                                        report: Report) -> None:
    stack = await make_stack()
    sender, shop, twilio = stack.sender, Shop(30, "T"), stack.twilio
    workers = start_workers(stack.settings, stack.clock, tmp_path, 1,
                            TWILIO_TIMEOUT_S=str(TIMEOUT_S), PARCELCAST_CLOCK_SPEED="20")
    try:
        await healthy(workers)
        await sender.setup(shop)
        await sender.events(shop.wave("in_transit"))

        # Slow: Twilio takes each message, then answers after our timeout.
        twilio.state.delay = TIMEOUT_S * 2.5
        first, second = range(0, 15), range(15, 30)
        await sender.events(shop.wave("out_for_delivery", first))
        slow = len([i for i in first if shop.final(i) != "in_transit"])

        async def slow_ones_recorded() -> bool:
            async with stack.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    """SELECT count(*) FROM notifications WHERE channel = 'sms'
                       AND moment = 'out_for_delivery' AND state = 'sent'""") >= slow)

        await until(slow_ones_recorded, 180, "slow SMS recorded")
        async with stack.pool.acquire() as conn:
            asked = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE channel = 'sms' AND attempts > 1")
        twilio.state.delay = 0

        # 5xx, then 429 with Retry-After.
        twilio.state.fail_next, twilio.state.fail_status = 8, 500
        await sender.events(shop.wave("out_for_delivery", second))
        await until(lambda: _no_failures_left(twilio), 180, "500s used up")
        twilio.state.fail_next, twilio.state.fail_status = 8, 429
        twilio.state.retry_after = 1
        await sender.events(shop.wave("delivered"))
        settle_s = await settled(stack.connect)

        conn = await stack.connect()
        try:
            figures = await check(conn, shop, sender, twilio, stack.smtp)
            attempts = await conn.fetchval(
                "SELECT sum(attempts) FROM notifications WHERE channel = 'sms'")
        finally:
            await conn.close()
        figures.update({
            "sms_timed_out_then_asked": asked, "sms_attempts": attempts,
            "twilio_refused_500_or_429": twilio.state.failed,
            "twilio_duplicates": twilio.state.duplicates,
            "settled_after_last_wave_s": round(settle_s, 2),
        })
        report("twilio_slow_5xx_429", figures)
        assert not figures["problems"], figures["problems"]
        assert asked >= slow and twilio.state.failed == 16
    finally:
        for worker in workers:
            worker.stop()


async def _no_failures_left(twilio: object) -> bool:
    return twilio.state.fail_next == 0  # type: ignore[attr-defined, no-any-return]
