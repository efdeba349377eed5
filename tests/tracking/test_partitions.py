"""Tracking events partitioned by the month they were stored (migration 0013), their dedupe
keys kept apart, and `parcelcast maintenance` (issue 15), against real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.clock import ManualClock
from service.settings import Settings
from service.store import event_partitions
from service.tracking.retention import maintain
from tests.builders import event, order, shipment
from tests.servers import with_database
from workers.maintenance import maintain_once


async def _names(conn: asyncpg.Connection) -> list[str]:
    return [p.name for p in await event_partitions.partitions(conn)]


async def _where(conn: asyncpg.Connection) -> dict[str, str]:
    """Each stored event's description -> the partition holding it."""
    rows = await conn.fetch("SELECT description, tableoid::regclass::text AS part "
                            "FROM tracking_events")
    return {r["description"]: r["part"] for r in rows}


async def _post(client: TestClient, headers: dict[str, str], *events: dict[str, object]
                ) -> dict[str, object]:
    answer = await client.post("/v1/tracking-events", json={"events": list(events)},
                               headers=headers)
    assert answer.status == 202, await answer.text()
    return dict(await answer.json())


async def test_maintenance_creates_months_ahead_and_drops_expired_ones_with_their_events(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
    settings: Settings,
) -> None:
    june = datetime(2024, 6, 15, 12, tzinfo=UTC)
    clock.set(june)
    old = event("in_transit", "2024-06-15T10:00:00Z", description="june", event_id="e-june")
    assert (await _post(client, admin, old))["accepted"] == 1
    async with pool.acquire() as conn:
        # No partition for June 2024 yet: the default partition took the event.
        assert (await _where(conn))["june"] == "tracking_events_default"
        dry = await maintain(conn, june, 2, 0, dry_run=True)
        assert [c["name"] for c in dry.created] == [
            "tracking_events_p2024_06", "tracking_events_p2024_07", "tracking_events_p2024_08"]
        assert dry.created[0]["moved_from_default"] == 1
        assert "tracking_events_p2024_06" not in await _names(conn)  # a dry run changes nothing
        done = await maintain(conn, june, 2, 0)
        assert [c["name"] for c in done.created] == [c["name"] for c in dry.created]
        assert (await _where(conn))["june"] == "tracking_events_p2024_06"
        assert (await maintain(conn, june, 2, 0)).created == []  # nothing left to do

    october = datetime(2024, 10, 3, tzinfo=UTC)
    clock.set(october)
    assert (await _post(client, admin, event("in_transit", "2024-10-03T00:00:00Z",
                                             description="october")))["accepted"] == 1
    # The worker's loop, with a retention of three months: June ended four months ago.
    keeping = settings.model_copy(update={"event_retention_months": 3,
                                          "event_partitions_ahead": 1})
    report = await maintain_once(pool, clock, keeping)
    assert report is not None
    assert report.cutoff == datetime(2024, 7, 1, tzinfo=UTC)
    assert [(d["name"], d["events"]) for d in report.dropped] == [
        ("tracking_events_p2024_06", 1)]
    assert "tracking_events_p2024_10" in [c["name"] for c in report.created]
    async with pool.acquire() as conn:
        names = await _names(conn)
        assert "tracking_events_p2024_06" not in names and "tracking_events_p2024_07" in names
        assert await _where(conn) == {"october": "tracking_events_p2024_10"}
        assert await conn.fetchval("SELECT count(*) FROM tracking_event_keys") == 1
    # Its key went with it: a replay of the expired event is a new event (docs/operations.md).
    assert (await _post(client, admin, old))["accepted"] == 1


async def test_a_replay_after_its_month_changed_is_still_stored_once(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    assert (await client.put("/v1/orders/o-1", json=order(), headers=admin)).status == 201
    assert (await client.put("/v1/shipments/s-1", json=shipment(), headers=admin)).status == 201
    numbered = event("in_transit", "2026-11-02T12:00:00Z", event_id="evt-1",
                     description="numbered")
    unnumbered = event("out_for_delivery", "2026-11-03T08:00:00Z", description="unnumbered")
    async with pool.acquire() as conn:
        await maintain(conn, clock.now(), 3, 0)
    assert (await _post(client, admin, numbered, unnumbered))["accepted"] == 2
    clock.set(datetime(2027, 2, 10, tzinfo=UTC))
    async with pool.acquire() as conn:
        await maintain(conn, clock.now(), 3, 0)
    late = await _post(client, admin, unnumbered, dict(numbered, description="resent"),
                       numbered)
    assert (late["accepted"], late["duplicates"]) == (0, 3)
    async with pool.acquire() as conn:
        assert await _where(conn) == {"numbered": "tracking_events_p2026_11",
                                      "unnumbered": "tracking_events_p2026_11"}
    shown = await (await client.get("/v1/shipments/s-1", headers=admin)).json()
    assert shown["event_count"] == 2 and len(shown["timeline"]) == 2


async def test_extreme_dates_are_stored_or_rejected_as_before(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool, clock: ManualClock,
) -> None:
    edges = [event("in_transit", "1970-01-01T00:00:00Z", description="1970"),
             event("in_transit", "2099-12-31T23:59:59Z", description="2099"),
             event("in_transit", "0001-01-01T00:00:00+14:00", description="year 1"),
             event("in_transit", "9999-12-31T23:00:00-12:00", description="year 9999")]
    outcome = await _post(client, admin, *edges)
    assert (outcome["accepted"], outcome["rejected"]) == (2, 2)
    errors = outcome["errors"]
    assert isinstance(errors, list)
    assert [(e["index"], e["errors"][0]["code"]) for e in errors] == [
        (2, "date_range"), (3, "date_range")]
    # Stored by when they arrived, whatever their scan time; a clock at the end of time
    # (no month after it to bound a partition) stores into the default partition.
    clock.set(datetime(9999, 12, 20, tzinfo=UTC))
    outcome = await _post(client, admin, *edges[:2],
                          event("delivered", "2099-12-31T23:59:59Z", description="late"))
    assert (outcome["accepted"], outcome["duplicates"]) == (1, 2)
    async with pool.acquire() as conn:
        report = await maintain(conn, clock.now(), 3, 0)
        assert report.created == []
        where = await _where(conn)
        assert where["late"] == "tracking_events_default"
        times = await conn.fetch("SELECT occurred_at FROM tracking_events ORDER BY occurred_at")
    assert [t["occurred_at"].year for t in times] == [1970, 2099, 2099]


# The migration on a database of its own, populated at 0011.

@pytest.fixture
async def at_0011(postgres_admin: str) -> AsyncIterator[str]:
    from service.store.migrations import upgrade

    name = f"parcelcast_partition_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(postgres_admin, name)
    try:
        await asyncio.to_thread(upgrade, url, "0011")
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


POPULATE = """
INSERT INTO tracking_events (dedupe_key, carrier, tracking_number, carrier_event_id, status,
                             status_rank, description, occurred_at, received_at, payload)
SELECT substring(sha256(convert_to(  -- the key the API gives (service.tracking.ingest.id_key)
           concat_ws(chr(31), 'id', 'ups', '1Z' || (i % 7), 'evt-' || i), 'UTF8')) FOR 16),
       'ups', '1Z' || (i % 7), 'evt-' || i, 'in_transit', 1,
       'scan ' || i, timestamptz '2024-01-01' + i * interval '1 day',
       timestamptz '2024-01-01' + i * interval '1 day', '{}'
FROM generate_series(1, 100) i
"""


async def test_the_migration_partitions_a_populated_table_and_downgrades(at_0011: str) -> None:
    from alembic import command
    from service.store import events
    from service.store.migrations import alembic_config, upgrade
    from service.tracking.ingest import parse_event, to_row

    conn = await asyncpg.connect(at_0011)
    try:
        await conn.execute(POPULATE)
        before = await conn.fetch("SELECT * FROM tracking_events ORDER BY id")
        # Up to the newest schema: the ingest below is today's code.
        await asyncio.to_thread(upgrade, at_0011, "head")
        assert await conn.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = 'tracking_events'") == "p"
        names = await _names(conn)
        # A partition for each month the rows were stored in (Jan-Apr 2024), and the default.
        assert {f"tracking_events_p2024_0{m}" for m in range(1, 5)} <= set(names)
        assert names[-1] == "tracking_events_default"
        assert await conn.fetchval("SELECT count(*) FROM tracking_events_default") == 0
        after = await conn.fetch(f"SELECT {', '.join(before[0].keys())} FROM tracking_events "
                                 "ORDER BY id")
        assert [dict(r) for r in after] == [dict(r) for r in before]
        assert await conn.fetchval("SELECT count(*) FROM tracking_event_keys k JOIN "
                                   "tracking_events e ON e.id = k.event_id "
                                   "AND e.dedupe_key = k.dedupe_key") == 100
        # A stored event sent again is a duplicate; a new one takes the next id.
        raw = json.dumps(event("in_transit", "2026-11-02T00:00:00Z", "1Z3",
                               event_id="evt-3")).encode()
        parsed, _ = parse_event(raw)
        assert parsed is not None
        again = await events.ingest(conn, [to_row(parsed, raw)], datetime.now(UTC))
        assert again.accepted_keys == set()
        raw = raw.replace(b"evt-3", b"evt-new")
        parsed, _ = parse_event(raw)
        assert parsed is not None
        new = await events.ingest(conn, [to_row(parsed, raw)], datetime.now(UTC))
        assert len(new.accepted_keys) == 1
        newest = await conn.fetchval("SELECT max(id) FROM tracking_events")
        assert newest > 100

        await asyncio.to_thread(command.downgrade, alembic_config(at_0011), "0011")
        assert await conn.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = 'tracking_events'") == "r"
        assert await conn.fetchval("SELECT to_regclass('tracking_event_keys')") is None
        assert await conn.fetchval("SELECT count(*) FROM tracking_events") == 101
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO tracking_events (dedupe_key, carrier, "
                               "tracking_number, status, status_rank, occurred_at, "
                               "received_at, payload) SELECT dedupe_key, carrier, "
                               "tracking_number, status, status_rank, occurred_at, "
                               "received_at, payload FROM tracking_events WHERE id = 1")
        assert await conn.fetchval(
            "INSERT INTO tracking_events (dedupe_key, carrier, tracking_number, status, "
            "status_rank, occurred_at, received_at, payload) VALUES ('\\x01', 'ups', '1Z', "
            "'in_transit', 1, now(), now(), '{}') RETURNING id") > newest
        await asyncio.to_thread(upgrade, at_0011, "head")  # and up again
        assert await conn.fetchval("SELECT count(*) FROM tracking_event_keys") == 102
    finally:
        await conn.close()


def test_maintenance_refuses_bad_flags_and_changes_nothing(database_url: str,
                                                          redis_server_url: str) -> None:
    from tests.test_cli import _env, run

    async def names() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return await _names(conn)
        finally:
            await conn.close()

    env = _env(DATABASE_URL=database_url, REDIS_URL=redis_server_url,
               PARCELCAST_CLOCK_START="2031-05-20T00:00:00+00:00")
    before = asyncio.run(names())
    for flags, named in ((["--ahead", "0"], "--ahead"), (["--ahead", "soon"], "--ahead"),
                         (["--retention-months", "-1"], "--retention-months"),
                         (["--dry-run=yes"], "--dry-run")):
        done = run("maintenance", *flags, env=env)
        assert done.returncode == 2, (flags, done.stdout, done.stderr)
        assert named in done.stderr and "Traceback" not in done.stderr
    assert asyncio.run(names()) == before
    dry = run("maintenance", "--dry-run", "--json", "--ahead", "1", env=env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and [c["name"] for c in report["created"]] == [
        "tracking_events_p2031_05", "tracking_events_p2031_06"]
    assert asyncio.run(names()) == before
    done = run("maintenance", "--ahead", "1", env=env)
    assert done.returncode == 0, done.stderr
    assert "create tracking_events_p2031_05" in done.stdout
    assert {"tracking_events_p2031_05", "tracking_events_p2031_06"} <= set(asyncio.run(names()))


async def test_maintenance_waits_for_a_busy_table_only_briefly_and_postpones(
    pool: asyncpg.Pool,
) -> None:
    july = datetime(2025, 7, 4, tzinfo=UTC)
    async with pool.acquire() as reader, pool.acquire() as conn:
        async with reader.transaction():
            # A long read of the events (a training run, say) holds the table.
            await reader.fetchval("SELECT count(*) FROM tracking_events")
            report = await maintain(conn, july, 0, 0)
            assert report.postponed == ["create tracking_events_p2025_07"]
            assert report.created == []
        assert "tracking_events_p2025_07" not in await _names(conn)
        assert [c["name"] for c in (await maintain(conn, july, 0, 0)).created] == [
            "tracking_events_p2025_07"]
