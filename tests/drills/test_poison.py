"""Poison: one bad row among healthy ones, in a refresh batch and in a merged ingest.

A shipment whose promised date the pipeline cannot compute with (year 9999) shares a refresh
batch with 29 healthy ones: the batch is split, the 29 get their status, ETA and messages,
and the bad one is set aside (`parcelcast work failed`), to be tried again later, not in a
loop. One request with a NUL character among 200 concurrent single-event requests is that
request's error alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from service.api.keys import coalescer_key
from tests.drills.conftest import MakeStack, Report
from tests.drills.harness import Shop, check, healthy, settled, start_workers, until
from tests.servers import worker_env

POISON = 7


async def test_a_poison_row_in_a_refresh_batch(make_stack: MakeStack, tmp_path: Path,
                                               report: Report) -> None:
    stack = await make_stack()
    sender, shop = stack.sender, Shop(30, "X")
    workers = start_workers(stack.settings, stack.clock, tmp_path, 1)
    try:
        await healthy(workers)
        await sender.setup(shop)
        await settled(stack.connect)
        async with stack.pool.acquire() as conn:
            # Refused at the edge nowadays; rows stored before, or by another path, may
            # still carry such a date.
            await conn.execute("UPDATE shipments SET promised_delivery_date = '9999-12-31' "
                               "WHERE shipment_id = $1", shop.shipment_id(POISON))

        async def quarantined() -> bool:
            async with stack.pool.acquire() as conn:
                return bool(await conn.fetchval("SELECT count(*) FROM failed_work"))

        async def poison_attempts() -> list[int]:
            async with stack.pool.acquire() as conn:
                return [r["attempts"] for r in await conn.fetch(
                    "SELECT attempts FROM failed_work")]

        for status in ("in_transit", "out_for_delivery", "delivered"):
            await sender.batch(shop.wave(status))  # one statement: refreshes handed together
            if status == "in_transit":
                # Set aside in the first wave's batch, and not tried again in a loop. Checked
                # as soon as it is: its retry is due a minute (of the worker's real-speed
                # clock) after it failed, and the waves' messages may take that long to go
                # out on a loaded machine.
                await until(quarantined, 180, "poison quarantined")
                attempts = await poison_attempts()
                await asyncio.sleep(3)  # long enough for a hot loop to show itself
                attempts_after_3s = await poison_attempts()
                assert attempts == attempts_after_3s == [1], (attempts, attempts_after_3s)
            await settled(stack.connect, allowed_work=1)

        failed: list[dict[str, Any]] = []
        waiting: list[dict[str, Any]] = []

        async def retry_waiting() -> bool:
            """The poison's next try waits for its retry time (not while a retry that came
            due meanwhile runs)."""
            nonlocal failed, waiting
            async with stack.pool.acquire() as conn, conn.transaction(
                    isolation="repeatable_read"):  # one view of both
                failed = [dict(r) for r in await conn.fetch(
                    "SELECT kind, subject_id, attempts, error, retry_at FROM failed_work")]
                waiting = [dict(r) for r in await conn.fetch(
                    "SELECT kind, subject_id, state, run_after FROM work_items")]
            return len(failed) == 1 and waiting == [
                {"kind": "refresh_shipment", "subject_id": shop.shipment_id(POISON),
                 "state": "pending", "run_after": failed[0]["retry_at"]}]

        conn = await stack.connect()
        try:
            figures = await check(conn, shop, sender, stack.twilio, stack.smtp,
                                  skip=frozenset({POISON}))
        finally:
            await conn.close()
        try:
            await until(retry_waiting, 180, "the poison's retry waiting")
        except AssertionError:
            pass  # what was found instead is asserted below
        listing = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "service.cli", "work", "failed"],
            env=worker_env(stack.settings, stack.clock), capture_output=True, text=True,
            timeout=120)
        quarantine_metric = await workers[0].metric("parcelcast_work_quarantined_total")
        figures.update({
            "shipments": shop.n, "shipments_quarantined": len(failed),
            "poison_attempts_after_3s": attempts_after_3s[0],
            "poison_attempts_at_the_end": failed[0]["attempts"] if failed else None,
            "work_left_besides_the_poison_retry": len(waiting) - 1,
            "quarantined_metric": quarantine_metric,
        })
        figures["work_left"] = len(waiting)
        report("poison_row_in_a_refresh_batch", figures)
        assert not figures["problems"], figures["problems"]
        [bad] = failed
        # Tried again only when its retry came (one more time per minute that passed since,
        # doubling), each time with its next retry waiting: never lost, never in a loop.
        assert bad["subject_id"] == shop.shipment_id(POISON)
        assert "OverflowError" in bad["error"]
        assert waiting == [{"kind": "refresh_shipment", "subject_id": shop.shipment_id(POISON),
                            "state": "pending", "run_after": bad["retry_at"]}]
        assert listing.returncode == 0 and shop.shipment_id(POISON) in listing.stdout
        assert "OverflowError" in listing.stdout
    finally:
        for worker in workers:
            worker.stop()


async def test_a_nul_in_one_of_many_merged_requests(make_stack: MakeStack,
                                                    report: Report) -> None:
    stack = await make_stack()
    scans = Shop(200, "M").wave("in_transit")
    bad = {**scans[100], "tracking_number": "1ZMBAD", "description": "scan\u0000text"}

    async def post(scan: dict[str, object]) -> int:
        answer = await stack.api.post("/v1/tracking-events", json=scan,
                                      headers=stack.sender.headers)
        await answer.read()
        return answer.status

    statuses = await asyncio.gather(*(post(scan) for scan in [*scans[:100], bad, *scans[100:]]))
    valid = [s for i, s in enumerate(statuses) if i != 100]
    async with stack.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM tracking_events WHERE tracking_number LIKE '1ZM%'")
    figures = {"requests": len(statuses), "valid_accepted": valid.count(202),
               "valid_refused": len(valid) - valid.count(202), "bad_answer": statuses[100],
               "events_stored": stored,
               "merged_flushes_stored_one_by_one": stack.api.app[coalescer_key].fallbacks}
    report("nul_in_a_merged_request", figures)
    assert valid == [202] * 200 and stored == 200
    assert 400 <= statuses[100] < 500
