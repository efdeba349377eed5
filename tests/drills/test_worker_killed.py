"""Workers killed with SIGKILL, one in the middle of a refresh batch and one in the middle of
sends (the providers have the messages, the worker has no answer yet).

Their work is handed over again once stale; a send whose worker died is taken over after its
lease and asks the provider first: no SMS goes out twice; e-mail, which SMTP cannot be asked
about, is re-sent with the same Message-ID (documented at-least-once), and counted here."""

from __future__ import annotations

from pathlib import Path

from tests.drills.conftest import MakeStack, Report
from tests.drills.harness import Shop, check, healthy, restarts, settled, start_workers, until


async def test_workers_killed_mid_batch_and_mid_send(
    make_stack: MakeStack, tmp_path: Path, report: Report,
) -> None:
    stack = await make_stack()
    sender, shop = stack.sender, Shop(30, "K")
    workers = start_workers(stack.settings, stack.clock, tmp_path, 2)
    replacement = []
    try:
        await healthy(workers)
        await sender.setup(shop)

        # Mid-batch: the scans of every shipment in one request, then a worker dies while
        # their refreshes are out.
        async def enqueued() -> bool:
            async with stack.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM work_items WHERE state = 'enqueued'"))

        await sender.batch(shop.wave("in_transit"))
        await until(enqueued, 180, "refreshes handed out")
        async with stack.pool.acquire() as conn:
            out_at_kill = await conn.fetchval(
                "SELECT count(*) FROM work_items WHERE state = 'enqueued'")
        workers[1].kill()

        # Mid-send: the providers record each message and hold their answer; the other
        # worker dies meanwhile.
        stack.twilio.state.delay = stack.smtp.state.delay = 3.0
        await sender.batch(shop.wave("out_for_delivery"))

        async def sending() -> bool:
            async with stack.pool.acquire() as conn:
                busy = await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE state = 'sending'")
            return bool(busy and stack.twilio.state.messages)

        await until(sending, 180, "sends in flight")
        async with stack.pool.acquire() as conn:
            sending_at_kill = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE state = 'sending'")
        at_provider_at_kill = len(stack.twilio.state.messages) + len(stack.smtp.state.messages)
        workers[0].kill()
        stack.twilio.state.delay = stack.smtp.state.delay = 0

        replacement = start_workers(stack.settings, stack.clock, tmp_path, 1)
        await healthy(replacement)
        await sender.events(shop.wave("delivered"))
        settle_s = await settled(stack.connect)
        conn = await stack.connect()
        try:
            figures = await check(conn, shop, sender, stack.twilio, stack.smtp,
                                  email_resends_allowed=True)
            figures["sends_taken_over"] = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE attempts > 1")
        finally:
            await conn.close()
        figures.update({
            "refreshes_out_when_killed": out_at_kill,
            "sends_in_flight_when_killed": sending_at_kill,
            "messages_at_providers_when_killed": at_provider_at_kill,
            "settled_after_last_wave_s": round(settle_s, 2),
            "loop_restarts": await restarts(replacement),
        })
        report("workers_killed_mid_batch_and_mid_send", figures)
        assert not figures["problems"], figures["problems"]
    finally:
        for worker in [*workers, *replacement]:
            worker.stop()
