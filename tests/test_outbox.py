"""Accepted work is never lost: Redis stopped, restarted empty, and a worker process killed."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.api.app import create_app
from service.clock import ManualClock
from service.eta.runtime import Prediction, refresh_inputs
from service.integrations import CarrierEstimate
from service.settings import Settings
from service.store import etas, work
from service.store import notifications as notifications_db
from service.store import shipments as shipments_db
from service.store import webhooks as webhooks_db
from service.store.redis import arq_client
from tests.builders import event, order, shipment
from tests.servers import OwnRedis, start_worker, stop_worker, worker_env
from workers.main import run_worker
from workers.relay import Relay


@pytest.fixture
def own_redis(tmp_path: Path) -> OwnRedis:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()

# Deadlines are generous, not targets: a loaded machine runs a burst worker (or a worker
# process reconnecting after Redis is back) many times slower than a quiet one.
BURST_DEADLINE_S = 120


def test_own_redis_never_takes_a_server_on_its_port_for_its_own(tmp_path: Path) -> None:
    """The port free_port() offered was taken meanwhile (another test run's server): the
    test's own Redis starts on another port, rather than the test stopping a server that is
    not its own and carrying on with the other one."""
    other = OwnRedis(tmp_path / "other")
    other.start()
    mine = OwnRedis(tmp_path / "mine")
    mine.port = other.port
    try:
        url = mine.start()
        assert mine.port != other.port and url == mine.url
        client = SyncRedis.from_url(url)
        try:
            assert mine.process is not None
            assert int(client.info("server")["process_id"]) == mine.process.pid
        finally:
            client.close()
    finally:
        mine.stop()
        other.stop()


@pytest.fixture
async def outage_client(aiohttp_client, settings: Settings, clock: ManualClock,  # type: ignore[no-untyped-def]
                        pool: asyncpg.Pool, own_redis: OwnRedis) -> TestClient:
    own = settings.model_copy(update={"redis_url": own_redis.url})
    return await aiohttp_client(create_app(own, clock))


async def _derived(pool: asyncpg.Pool) -> dict[str, tuple[str, int]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT shipment_id, status, event_count FROM shipments WHERE derived_at > $1",
            # derived_at is first set by the upsert itself; the worker sets it again later.
            await conn.fetchval("SELECT max(updated_at) FROM shipments"),
        )
    return {r["shipment_id"]: (r["status"], r["event_count"]) for r in rows}


async def _work_left(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM work_items"))


async def test_ingestion_survives_redis_down_and_work_runs_when_it_is_back(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    client = outage_client
    await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    own_redis.stop()
    clock.advance(timedelta(minutes=5))
    answer = await client.post("/v1/tracking-events", headers=admin, json=[
        event("in_transit", "2026-11-02T20:00:00Z"), event("out_for_delivery", "2026-11-04T15:00:00Z"),
    ])
    assert answer.status == 202 and (await answer.json())["accepted"] == 2
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["redis"].startswith("error")

    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=60)
    with pytest.raises((RedisConnectionError, OSError)):
        await relay.handoff_once()
    assert await _work_left(pool) == 1  # still there, still pending

    own_redis.start()
    assert await relay.handoff_once() == 1
    await redis.aclose()
    own = settings.model_copy(update={"redis_url": own_redis.url})
    await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
    assert await _derived(pool) == {"s-1": ("out_for_delivery", 2)}
    assert await _work_left(pool) == 0


async def test_jobs_lost_with_redis_are_handed_over_again(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=60, check_every=0)
    assert await relay.handoff_once() == 1
    # Redis dies before any worker took the job; it comes back empty.
    own_redis.stop()
    own_redis.start()
    assert await relay.handoff_once() == 0  # not stale yet
    await _time_passes(pool, 61)
    assert await relay.handoff_once() == 1
    await redis.aclose()
    clock.advance(timedelta(minutes=1))
    own = settings.model_copy(update={"redis_url": own_redis.url})
    await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
    assert await _work_left(pool) == 0
    assert "s-1" in await _derived(pool)


async def test_worker_process_rides_out_a_redis_restart(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis, tmp_path: Path,
) -> None:
    """A real `parcelcast worker` keeps going while Redis is stopped and started."""
    env = worker_env(settings, clock, REDIS_URL=own_redis.url, PARCELCAST_STALE_AFTER_S="1",
                     # No sweeps: only the work this test queues.
                     SWEEP_INTERVAL_S="3600")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
        await _eventually(lambda: _work_left(pool), 0, timeout=180)
        own_redis.stop()
        await outage_client.put(
            "/v1/shipments/s-2", json=shipment(tracking_number="1Z0002"), headers=admin)
        await asyncio.sleep(1.5)
        async with pool.acquire() as conn:
            assert await conn.fetchval(
                "SELECT count(*) FROM work_items WHERE subject_id = 's-2'") == 1
        own_redis.start()
        await _eventually(lambda: _work_left(pool), 0, timeout=180)
    finally:
        stop_worker(worker)


async def _eventually(probe, expected, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await probe()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r}, wanted {expected!r}")
        await asyncio.sleep(0.1)




async def _time_passes(pool: asyncpg.Pool, seconds: float) -> None:
    """`seconds` pass for the outbox's bookkeeping (hand-off and lease times are the
    database's clock), without waiting for them: what the relay decides then does not
    depend on how fast the machine runs the test."""
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE work_items SET enqueued_at = enqueued_at - make_interval(secs => $1),
                                     leased_until = leased_until - make_interval(secs => $1)""",
            float(seconds))


async def _handoffs(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT state, handoffs FROM work_items ORDER BY id")
    return [(r["state"], r["handoffs"]) for r in rows]


async def test_a_deep_queue_is_not_handed_over_again(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    """Work still queued in arq, however long it waits, goes to arq once; work whose job
    Redis lost goes again."""
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=60, check_every=0)
    try:
        assert await relay.handoff_once() == 1
        for _ in range(4):  # no worker: the job waits in arq, long past stale_after
            await _time_passes(pool, 61)
            assert await relay.handoff_once() == 0
        assert await _handoffs(pool) == [("enqueued", 1)]
        assert relay.handed_again == 0

        await redis.flushall()  # the job is gone
        await _time_passes(pool, 61)
        assert await relay.handoff_once() == 1
        assert await _handoffs(pool) == [("enqueued", 2)]
    finally:
        await redis.aclose()
    own = settings.model_copy(update={"redis_url": own_redis.url})
    await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
    assert await _work_left(pool) == 0


async def test_a_deep_queue_of_refreshes_goes_in_bigger_jobs(
    pool: asyncpg.Pool, settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    """A few refreshes go to arq 50 per job; a backlog in fewer, bigger jobs (one model call
    and one write for more shipments), still in more than one job."""
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=60)

    async def jobs_for(count: int) -> list[int]:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM work_items")
            await work.add(conn, work.REFRESH_SHIPMENT,
                           [f"s-{count}-{n}" for n in range(count)], clock.now())
        assert await relay.handoff_once() == count
        async with pool.acquire() as conn:
            return [r["n"] for r in await conn.fetch(
                "SELECT count(*) AS n FROM work_items GROUP BY job_id ORDER BY n DESC")]

    try:
        assert await jobs_for(80) == [50, 30]
        assert await jobs_for(400) == [200, 200]
    finally:
        await redis.aclose()


async def test_a_lease_keeps_work_with_its_worker_until_it_lapses(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    """A job's items are handed over again only once its lease runs out (its worker died),
    and a second copy of the job does not take items a live job holds."""
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    relay = Relay(pool, redis, clock, stale_after=60, check_every=0)
    try:
        assert await relay.handoff_once() == 1
        async with pool.acquire() as conn:
            item_id = await conn.fetchval("SELECT id FROM work_items")
            assert await work.lease(conn, [item_id], "job-a", 120) == {item_id}
            assert await work.lease(conn, [item_id], "job-b", 120) == set()
        await redis.flushall()  # whatever arq says, a live lease means someone works on it
        await _time_passes(pool, 61)  # long past stale_after, well within the lease
        assert await relay.handoff_once() == 0
        await _time_passes(pool, 61)  # the lease lapses: its worker is gone
        assert await relay.handoff_once() == 1
        assert await _handoffs(pool) == [("enqueued", 2)]
        async with pool.acquire() as conn:
            assert await work.lease(conn, [item_id], "job-b", 120) == {item_id}
    finally:
        await redis.aclose()


async def test_a_send_whose_hand_off_never_committed_is_not_lost(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    """A relay that put a send in arq and died before recording the hand-off leaves its item
    `pending`, and the job runs all the same. A message not due yet by the job's clock (a
    later schedule, or a worker whose clock is behind the one that planned it) is queued for
    then, not retired with the item."""
    await outage_client.put("/v1/orders/o-1", json=order(), headers=admin)
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    due = clock.now() + timedelta(hours=1)
    planned = notifications_db.NewNotification("s-1", "o-1", "shipped", "k", "email",
                                                "c@example.com", "en", due)
    async with pool.acquire() as conn, conn.transaction():
        [nid] = await notifications_db.schedule(conn, [planned], clock.now())
        item_id = await conn.fetchval(
            "SELECT id FROM work_items WHERE kind = $1 AND subject_id = $2",
            work.SEND_NOTIFICATION, str(nid))
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    try:  # the relay's enqueue reached arq; its transaction never committed
        await redis.enqueue_job("send_notifications", [(item_id, str(nid))],
                                _job_id="handed-off-by-a-relay-that-died")
    finally:
        await redis.aclose()
    own = settings.model_copy(update={"redis_url": own_redis.url})
    await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
    async with pool.acquire() as conn:
        left = await conn.fetch("SELECT state, run_after FROM work_items WHERE kind = $1",
                                work.SEND_NOTIFICATION)
        state = await conn.fetchval("SELECT state FROM notifications WHERE id = $1", nid)
    assert state == "scheduled"
    assert [(r["state"], r["run_after"]) for r in left] == [("pending", due)]


async def test_a_refresh_whose_hand_off_never_committed_leaves_its_item_to_the_relay(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    settings: Settings, clock: ManualClock, own_redis: OwnRedis,
) -> None:
    """A refresh job that arq runs although the relay that queued it died before recording
    the hand-off does not take the still-pending item (a scan merged into it meanwhile
    would be retired with a job that started before it): the relay hands it over again and
    that refresh runs."""
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    async with pool.acquire() as conn:
        item_id = await conn.fetchval(
            "SELECT id FROM work_items WHERE kind = $1 AND subject_id = 's-1'",
            work.REFRESH_SHIPMENT)
    redis = arq_client(own_redis.url, settings.parcelcast_queue_name)
    own = settings.model_copy(update={"redis_url": own_redis.url})
    try:  # the relay's enqueue reached arq; its transaction never committed
        await redis.enqueue_job("refresh_shipments", [(item_id, "s-1")],
                                _job_id="refresh-handed-off-by-a-relay-that-died")
        await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
        async with pool.acquire() as conn:
            left = await conn.fetch("SELECT id, state, leased_by FROM work_items")
        assert [(r["id"], r["state"], r["leased_by"]) for r in left] == [
            (item_id, "pending", None)]
        relay = Relay(pool, redis, clock, stale_after=settings.parcelcast_stale_after_s)
        assert await relay.handoff_once() == 1
        await asyncio.wait_for(run_worker(own, clock, burst=True, relay=False), BURST_DEADLINE_S)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM work_items") == 0
    finally:
        await redis.aclose()


async def test_a_refresh_that_ran_late_never_hides_a_newer_eta(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
) -> None:
    """Two refreshes of one shipment at once (one handed over again after its worker died):
    the one that scored an older view of the shipment waits for the other's lock, and once
    it has the lock the newer ETA it finds stays shown."""
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    older_at = datetime(2026, 11, 3, 20, tzinfo=UTC)
    day = datetime(2026, 11, 6, 15, tzinfo=UTC)

    def guess(stage: str) -> Prediction:
        return Prediction(stage, day, day + timedelta(days=1), day + timedelta(days=2), 0.1, [])

    async with pool.acquire() as newer, pool.acquire() as late:
        transaction = newer.transaction()
        await transaction.start()
        await etas.store_many(newer, ["s-1"], older_at + timedelta(seconds=2), "m-1",
                              [guess("first_scan")])  # holds the shipment until it commits
        stale = asyncio.create_task(etas.store_many(late, ["s-1"], older_at, "m-1",
                                                    [guess("label")]))
        pid = late.get_server_pid()
        deadline = asyncio.get_running_loop().time() + 30
        while await newer.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid) != "Lock":
            assert asyncio.get_running_loop().time() < deadline, "never waited for the lock"
            await asyncio.sleep(0.05)
        await transaction.commit()
        await asyncio.wait_for(stale, 30)
        shown = await late.fetchval(
            """SELECT e.stage FROM shipments s JOIN shipment_etas e ON e.id = s.eta_id
               WHERE s.shipment_id = 's-1'""")
    assert shown == "first_scan"


async def test_a_refresh_that_read_the_shipment_before_a_change_never_hides_one_after_it(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    """Refreshes run in different processes, often on different hosts, whose clocks differ:
    one that read the shipment before its first scan, an OMS update or a carrier's estimate
    landed, and whose clock runs ahead, still never replaces the ETA predicted from the
    shipment after the change (the worker-kill drill saw a label-stage ETA hide the first
    scan's), and is not kept as if it had been shown. An ETA from the same inputs predicted
    later still replaces it."""
    await outage_client.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    now, day = clock.now(), datetime(2026, 11, 6, 15, tzinfo=UTC)

    async def first_scan() -> None:
        answer = await outage_client.post("/v1/tracking-events", headers=admin, json=[
            event("in_transit", "2026-11-02T20:00:00Z")])
        assert answer.status < 300, await answer.text()

    async def oms_update() -> None:
        answer = await outage_client.put("/v1/shipments/s-1", headers=admin,
                                         json=shipment(promised_delivery_date="2026-11-07"))
        assert answer.status < 300, await answer.text()

    async def carrier_estimate() -> None:
        async with pool.acquire() as conn:
            kept = await webhooks_db.set_estimates(conn, [CarrierEstimate(
                "ups", "1Z0001", date(2026, 11, 5), "ups", now)], now)
        assert kept.changed == 1

    async def shown(conn: asyncpg.Connection) -> datetime:
        return await conn.fetchval(  # type: ignore[no-any-return]
            """SELECT e.eta_p50 FROM shipments s JOIN shipment_etas e ON e.id = s.eta_id
               WHERE s.shipment_id = 's-1'""")

    async def store(conn: asyncpg.Connection, at: datetime, p50: datetime, revision: int
                    ) -> None:
        await etas.store_many(conn, ["s-1"], at, "m-1",
                              [Prediction("later", p50, p50, p50, 0.1, [])],
                              revisions=[revision])

    for i, change in enumerate((first_scan, oms_update, carrier_estimate)):
        async with pool.acquire() as conn:
            (before,), _ = await refresh_inputs(conn, ["s-1"], now)
        await change()
        async with pool.acquire() as conn:
            (after,), _ = await refresh_inputs(conn, ["s-1"], now)
            assert after["revision"] > before["revision"], change.__name__
            at, p50 = now + timedelta(minutes=10 * i), day + timedelta(hours=10 * i)
            await store(conn, at, p50, after["revision"])
            # Read before the change, on a host whose clock runs 2 s ahead.
            await store(conn, at + timedelta(seconds=2), p50 + timedelta(hours=1),
                        before["revision"])
            assert await shown(conn) == p50, change.__name__
            # Never shown, so not in the history agents read, nor what the API calls latest.
            _, latest = await etas.first_and_latest(conn, "s-1")
            assert latest is not None and latest.eta_p50 == p50, change.__name__
            assert p50 + timedelta(hours=1) not in [
                e.eta_p50 for e in await etas.history(conn, "s-1")], change.__name__
            await store(conn, at + timedelta(seconds=3), p50 + timedelta(hours=2),
                        after["revision"])
            assert await shown(conn) == p50 + timedelta(hours=2), change.__name__


async def test_overlapping_refreshes_wait_instead_of_deadlocking(
    outage_client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
    clock: ManualClock,
) -> None:
    """Batches over the same shipments in opposite orders, many at once: none deadlocks."""
    ids = [f"s-{n}" for n in range(40)]
    for n, shipment_id in enumerate(ids):
        answer = await outage_client.put(f"/v1/shipments/{shipment_id}", headers=admin,
                                         json=shipment(tracking_number=f"1Z{n:06d}"))
        assert answer.status in (200, 201)

    async def derive(order: list[str]) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await shipments_db.rederive_many(conn, order, clock.now())
            await asyncio.sleep(0.01)  # hold the locks a moment

    batches = [ids if n % 2 else ids[::-1] for n in range(12)]
    await asyncio.gather(*(derive(b) for b in batches))
