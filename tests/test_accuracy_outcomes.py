"""Live accuracy of parcels that end without a delivery, and judging at scale, against real
PostgreSQL: a parcel returned to sender or declared lost is a miss once its date shown ends
and stays one (the return's own "delivered" scan completes nothing); a cancelled shipment is
dropped; a poll reads only the ETAs whose p90 passed since the last one and rewrites no
row, yet the misses still out keep growing; promotion/rollback judge a late ETA by the same
"date shown ended" rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.eta.runtime import Prediction
from service.settings import Settings
from service.store import accuracy, etas
from tests.builders import event, order, shipment
from tests.notifying import drain
from workers.monitoring import judge_overdue

LA = "America/Los_Angeles"
SHOWN_AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
P50 = datetime(2026, 11, 5, 18, 0, tzinfo=UTC)
P90 = datetime(2026, 11, 6, 18, 0, tzinfo=UTC)  # 10:00 on Nov 6 in Los Angeles
ENDS = datetime(2026, 11, 7, 8, 0, tzinfo=UTC)  # midnight after Nov 6 in Los Angeles (PST)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _shown(client: TestClient, admin: dict[str, str], settings: Settings,
                 clock: ManualClock, pool: asyncpg.Pool, sid: str = "s-1",
                 tracking: str = "1Z0001") -> None:
    """A shipment to Los Angeles, one ETA shown (p90 on Nov 6 there), handed over (its
    'shipped' message sent with it: scored as the first, the stage's and the one told)."""
    clock.set(SHOWN_AT)
    await client.put("/v1/orders/o-1", json=order(), headers=admin)
    await client.put(f"/v1/shipments/{sid}", headers=admin,
                     json=shipment(tracking_number=tracking))
    async with pool.acquire() as conn:
        await etas.store_many(conn, [sid], SHOWN_AT, "eta-a", [
            Prediction("label", P50 - timedelta(days=1), P50, P90, None, [])])
    await _scan(client, admin, settings, clock, pool, "in_transit",
                datetime(2026, 11, 3, 1, 0, tzinfo=UTC), tracking)


async def _scan(client: TestClient, admin: dict[str, str], settings: Settings,
                clock: ManualClock, pool: asyncpg.Pool, status: str, at: datetime,
                tracking: str = "1Z0001") -> None:
    clock.set(max(clock.now(), at + timedelta(minutes=5)))
    response = await client.post("/v1/tracking-events", headers=admin, json=event(
        status, _iso(at), tracking, event_id=f"{tracking}-{status}-{at:%d%H%M}"))
    assert response.status in (200, 201, 202), await response.text()
    await drain(settings, clock, pool)


async def _judge(clock: ManualClock, pool: asyncpg.Pool, settings: Settings,
                 at: datetime) -> int:
    clock.set(at)
    return await judge_overdue(pool, clock, settings)


async def _scores(pool: asyncpg.Pool, sid: str = "s-1") -> list[dict[str, object]]:
    async with pool.acquire() as conn:
        return await accuracy.scores(conn, sid)


async def _live(pool: asyncpg.Pool) -> accuracy.LiveAccuracy:
    async with pool.acquire() as conn:
        return await accuracy.champion_live_accuracy(conn, "eta-a", SHOWN_AT)


async def test_a_returned_parcel_is_a_miss_that_its_returns_delivery_never_completes(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    returned_at = datetime(2026, 11, 5, 20, 0, tzinfo=UTC)  # before the date shown ended
    await _scan(client, admin, settings, clock, pool, "returned_to_sender", returned_at)
    assert await _scores(pool) == []  # not judged before its date shown ends
    assert await _judge(clock, pool, settings, ENDS - timedelta(seconds=1)) == 0
    assert await _judge(clock, pool, settings, ENDS + timedelta(hours=1)) == 3  # first, stage, told
    missed = await _scores(pool)
    for score in missed:
        assert score["censored"] and not score["on_time_shown"] and not score["inside_window"]
        assert score["judged_at"] == ENDS and score["ended_at"] == returned_at
        # No delivery to wait for: the bound is the date shown's end, and stays there.
        assert score["error_days"] == pytest.approx((ENDS - P50).total_seconds() / 86400,
                                                    abs=1e-4)
    live = await _live(pool)
    assert (live.scored, live.still_out, live.on_time_shown) == (1, 0, 0)  # not "still out"

    # The return is delivered back to the sender a week later: still a miss, unchanged.
    await _scan(client, admin, settings, clock, pool, "delivered",
                datetime(2026, 11, 12, 17, 0, tzinfo=UTC))
    assert await _judge(clock, pool, settings, datetime(2026, 11, 13, tzinfo=UTC)) == 0
    assert await _scores(pool) == missed
    assert (await _live(pool)).on_time_shown == 0


async def test_a_return_delivered_back_inside_the_window_is_still_a_miss(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    """The return reaches the sender before the window shown to the customer closes (its
    "delivered" scan inside [p10, p90]): the customer got nothing, so live accuracy judges a
    miss when the date shown ends, and promotion/rollback count no delivery either."""
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    returned_at = datetime(2026, 11, 4, 20, 0, tzinfo=UTC)
    await _scan(client, admin, settings, clock, pool, "returned_to_sender", returned_at)
    back_at = datetime(2026, 11, 5, 20, 0, tzinfo=UTC)  # between p10 and p90
    await _scan(client, admin, settings, clock, pool, "delivered", back_at)
    assert await _scores(pool) == []  # the return's delivery scores nothing
    assert await _judge(clock, pool, settings, ENDS + timedelta(hours=1)) == 3
    for score in await _scores(pool):
        assert score["censored"] and not score["on_time_shown"] and not score["inside_window"]
        assert score["ended_at"] == returned_at
    assert (await _live(pool)).on_time_shown == 0
    async with pool.acquire() as conn:
        judged = await etas.scores(conn, ["eta-a"], SHOWN_AT, ENDS + timedelta(hours=1),
                                   common=False, shop_timezone=LA)
    assert (judged["eta-a"].rows, judged["eta-a"].late, judged["eta-a"].coverage) == (1, 1, 0)


async def test_a_parcel_returned_after_its_date_shown_stops_growing_at_its_return(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    assert await _judge(clock, pool, settings, ENDS + timedelta(hours=1)) == 3
    assert (await _live(pool)).still_out == 1
    returned_at = datetime(2026, 11, 9, 20, 0, tzinfo=UTC)
    await _scan(client, admin, settings, clock, pool, "returned_to_sender", returned_at)
    assert await _judge(clock, pool, settings, datetime(2026, 11, 20, tzinfo=UTC)) == 0
    for score in await _scores(pool):
        assert score["censored"] and score["ended_at"] == returned_at
        assert score["error_days"] == pytest.approx(
            (returned_at - P50).total_seconds() / 86400, abs=1e-4)
    assert (await _live(pool)).still_out == 0


async def test_a_lost_parcel_is_a_miss_and_a_cancelled_one_is_dropped(
    client: TestClient, admin: dict[str, str], make_key, settings: Settings,  # type: ignore[no-untyped-def]
    clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    await _shown(client, admin, settings, clock, pool, "s-2", "1Z0002")
    agent = await make_key("shipments:read", "support:write")
    lost_at = datetime(2026, 11, 6, 0, 0, tzinfo=UTC)
    clock.set(lost_at)
    lost = await client.post("/v1/support/shipments/s-1/lost", headers=agent,
                             json={"note": "UPS claim 123"})
    assert lost.status == 200, await lost.text()
    assert await _judge(clock, pool, settings, ENDS + timedelta(days=3)) == 6
    for score in await _scores(pool, "s-1"):
        assert score["censored"] and score["ended_at"] == lost_at
        assert score["error_days"] == pytest.approx((ENDS - P50).total_seconds() / 86400,
                                                    abs=1e-4)
    assert [s["ended_at"] for s in await _scores(pool, "s-2")] == [None] * 3
    assert ((await _live(pool)).scored, (await _live(pool)).still_out) == (2, 1)

    # s-2's label is cancelled: it never shipped, and leaves live accuracy.
    await _scan(client, admin, settings, clock, pool, "cancelled",
                datetime(2026, 11, 10, 9, 0, tzinfo=UTC), "1Z0002")
    assert await _scores(pool, "s-2") == []
    assert await _judge(clock, pool, settings, datetime(2026, 11, 11, tzinfo=UTC)) == 0
    live = await _live(pool)
    assert (live.scored, live.still_out) == (1, 0)


async def test_a_poll_reads_only_new_p90s_and_rewrites_no_row_yet_misses_keep_growing(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    assert await _judge(clock, pool, settings, ENDS + timedelta(hours=1)) == 3
    async with pool.acquire() as conn:
        versions = await conn.fetch("SELECT id, xmin::text FROM eta_scores ORDER BY id")
        # The next poll's candidates: only p90s since the last poll less a day.
        since = accuracy.judge_since(await accuracy.last_check(conn), ENDS + timedelta(days=2))
        assert since == ENDS + timedelta(hours=1) - accuracy.DATE_SHOWN_SPAN
        assert await accuracy.overdue(conn, ENDS + timedelta(days=2), since) == []
    before = (await _live(pool)).mae_days
    assert await _judge(clock, pool, settings, ENDS + timedelta(days=2, hours=1)) == 0
    async with pool.acquire() as conn:
        assert await conn.fetch("SELECT id, xmin::text FROM eta_scores ORDER BY id") == versions
    assert (await _live(pool)).mae_days == pytest.approx(before + 2, abs=1e-4)

    # Delivered at last: the true error, still a miss judged when its date ended.
    delivered_at = datetime(2026, 11, 9, 18, 0, tzinfo=UTC)
    await _scan(client, admin, settings, clock, pool, "delivered", delivered_at)
    for score in await _scores(pool):
        assert not score["censored"] and score["judged_at"] == ENDS
        assert score["error_days"] == pytest.approx(4.0, abs=1e-4)


async def test_a_poll_judges_a_date_the_moment_it_ends_on_its_quarter_hour(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    await _shown(client, admin, settings, clock, pool)
    assert await _judge(clock, pool, settings, ENDS - timedelta(minutes=20)) == 0
    assert await _judge(clock, pool, settings, ENDS - timedelta(seconds=1)) == 0
    assert await _judge(clock, pool, settings, ENDS) == 3  # midnight in Los Angeles
    assert not accuracy.dates_may_have_ended(ENDS, ENDS + timedelta(minutes=14, seconds=59))
    assert accuracy.dates_may_have_ended(ENDS, ENDS + timedelta(minutes=15))


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Europe/Berlin", "Asia/Kolkata",
                                  "Asia/Kathmandu", "Pacific/Chatham", "UTC"])
async def test_the_sql_and_python_date_shown_ends_agree(pool: asyncpg.Pool, zone: str) -> None:
    instants = [datetime(2026, 3, 8, 9, 30, tzinfo=UTC), datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
                datetime(2026, 11, 1, 8, 59, tzinfo=UTC), datetime(2026, 11, 6, 18, tzinfo=UTC),
                datetime(2026, 4, 5, 13, 0, tzinfo=UTC)]
    async with pool.acquire() as conn:
        for at in instants:
            in_sql = await conn.fetchval(
                f"SELECT {accuracy.date_shown_ends_sql('$1::timestamptz', '$2::text')}", at,
                zone)
            expected = accuracy.date_shown_ends(at, zone)
            assert in_sql == expected, (at, zone)
            assert timedelta(0) < expected - at <= accuracy.DATE_SHOWN_SPAN
            assert expected.astimezone(ZoneInfo(zone)).time().hour == 0
            assert expected.timestamp() % accuracy.QUARTER_HOUR_S == 0


async def test_promotion_scores_a_late_eta_when_its_date_shown_ended_like_live_accuracy(
    client: TestClient, admin: dict[str, str], settings: Settings, clock: ManualClock,
    pool: asyncpg.Pool,
) -> None:
    settings = settings.model_copy(update={"shop_timezone": LA})
    await _shown(client, admin, settings, clock, pool)
    async with pool.acquire() as conn:
        # p90 passed, the date shown (Nov 6 in Los Angeles) not over yet: not judged.
        early = await etas.scores(conn, ["eta-a"], SHOWN_AT, ENDS - timedelta(hours=1),
                                  common=False, shop_timezone=LA)
        assert "eta-a" not in early
        # Over: judged, as live accuracy judges it; and not in a window starting after.
        late = await etas.scores(conn, ["eta-a"], SHOWN_AT, ENDS + timedelta(hours=1),
                                 common=False, shop_timezone=LA)
        assert late["eta-a"].rows == 1 and late["eta-a"].coverage == 0
        after = await etas.scores(conn, ["eta-a"], ENDS + timedelta(minutes=1),
                                  ENDS + timedelta(hours=2), common=False, shop_timezone=LA)
        assert "eta-a" not in after or after["eta-a"].rows == 0
    assert await _judge(clock, pool, settings, ENDS + timedelta(hours=1)) == 3
    assert [s["judged_at"] for s in await _scores(pool)] == [ENDS] * 3
