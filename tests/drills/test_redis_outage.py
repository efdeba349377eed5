"""Redis killed (no persistence: every queued job is gone) and started again under load.

Ingestion never needs Redis, so nothing is refused; the worker's arq loop and relay fail,
back off and reconnect; jobs Redis lost are handed over again once stale; and nothing is
lost, stored twice or sent twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import shipment
from tests.drills.conftest import MakeStack, Report
from tests.drills.harness import Shop, check, healthy, restarts, settled, start_workers, until
from tests.servers import OwnRedis

DOWN_S = 6.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def test_redis_killed_and_restarted_under_load(
    make_stack: MakeStack, own_redis: OwnRedis, tmp_path: Path, report: Report,
) -> None:
    stack = await make_stack(redis_url=own_redis.url)
    sender, shop = stack.sender, Shop(24, "R")
    workers = start_workers(stack.settings, stack.clock, tmp_path, 1, WORKER_DOWN_AFTER_S="2")
    try:
        await healthy(workers)
        await sender.setup(shop)
        wave = asyncio.create_task(sender.events(shop.wave("in_transit"), 4, 0.1))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_redis.stop)  # SIGKILL: the queue is gone
        down_since = time.monotonic()
        await wave
        await sender.events(shop.wave("out_for_delivery"), 4, 0.1)  # accepted meanwhile

        async def arq_down() -> bool:
            status, body = await workers[0].health()
            return status == 503 and "arq" in body["down"]

        await until(arq_down, 180, "worker reports its arq loop down")
        await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - down_since)))
        await asyncio.to_thread(own_redis.start)
        back = time.monotonic()
        await sender.send("PUT", "/v1/shipments/probe", shipment("ro-probe", "1ZRPROBE"))

        async def probe_refreshed() -> bool:
            async with stack.pool.acquire() as conn:
                return bool(await conn.fetchval(
                    "SELECT NOT EXISTS (SELECT 1 FROM work_items WHERE subject_id = 'probe')"))

        await until(probe_refreshed, 180, "probe refreshed")
        resumed_s = time.monotonic() - back
        await healthy(workers, timeout=120)
        healthy_s = time.monotonic() - back
        await sender.events(shop.wave("delivered"), 4)
        settle_s = await settled(stack.connect)
        conn = await stack.connect()
        try:
            figures = await check(conn, shop, sender, stack.twilio, stack.smtp,
                                  email_resends_allowed=True)
        finally:
            await conn.close()
        figures.update({
            "redis_down_s": round(back - down_since, 1),
            "work_resumed_after_redis_back_s": round(resumed_s, 2),
            "all_loops_up_after_redis_back_s": round(healthy_s, 2),
            "settled_after_last_wave_s": round(settle_s, 2),
            "loop_restarts": await restarts(workers),
        })
        report("redis_killed_and_restarted", figures)
        assert not figures["problems"], figures["problems"]
    finally:
        for worker in workers:
            worker.stop()
