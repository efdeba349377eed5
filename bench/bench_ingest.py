"""Ingest: batch and single-event HTTP throughput vs a raw asyncpg COPY, and service RSS.

    python -m bench.bench_ingest [--events 200000] [--singles 10000]

The service runs as its own process (`parcelcast serve`); this process is the client.
The floor is a raw `COPY` of the very same rows into the same table, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.common import ScratchDatabase, ServedApp, markdown, rss_mb, write_result
from service.store.events import EventRow
from service.tracking.ingest import parse_event, to_row

STATUSES = ("in_transit", "in_transit", "out_for_delivery", "delivered")
START = datetime(2026, 11, 2, tzinfo=UTC)


def make_events(count: int, shipments: int, tag: str) -> list[dict[str, Any]]:
    events = []
    for i in range(count):
        n = i % shipments
        events.append({
            "carrier": "ups", "tracking_number": f"BT{n:07d}", "event_id": f"{tag}-{i}",
            "status": STATUSES[(i // shipments) % len(STATUSES)],
            "occurred_at": (START + timedelta(seconds=i)).isoformat(),
            "description": "Arrived at facility",
            "location": {"city": "Louisville", "region": "KY", "postal_code": "40209",
                         "country": "US"},
        })
    return events


async def create_shipments(database_url: str, count: int) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    await conn.copy_records_to_table(
        "shipments",
        columns=["shipment_id", "order_id", "carrier", "service_level", "tracking_number",
                 "label_created_at", "created_at", "updated_at"],
        records=[(f"s{n}", f"o{n}", "ups", "ground", f"BT{n:07d}", START, now, now)
                 for n in range(count)],
    )
    await conn.close()


async def post_all(base: str, key: str, bodies: list[bytes], concurrency: int) -> float:
    """Seconds to POST every body, `concurrency` at a time; every answer must be a 202."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as session:

        async def client() -> None:
            while queue:
                body = queue.pop()
                async with session.post("/v1/tracking-events", data=body) as answer:
                    if answer.status != 202:
                        raise RuntimeError(f"{answer.status}: {await answer.text()}")
                    await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - started


async def sample_rss(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.1)


def rows_of(events: list[dict[str, Any]]) -> list[EventRow]:
    """The bench's events as ingest stores them (parsed and checked as the API does)."""
    rows = []
    for e in events:
        raw = orjson.dumps(e)
        event, errors = parse_event(raw)
        if event is None:
            raise RuntimeError(f"bench event is invalid: {errors}")
        rows.append(to_row(event, raw))
    return rows


async def copy_floor(database_url: str, events: list[dict[str, Any]]) -> tuple[float, float]:
    """(COPY rows/s, executemany ON CONFLICT rows/s) for the same rows into tracking_events
    (the COPY without their dedupe keys: the floor of storing the rows at all)."""
    received = datetime.now(UTC)
    rows = rows_of(events)
    records = [(r.dedupe_key, r.carrier, r.tracking_number, r.carrier_event_id, r.status,
                r.status_rank, r.raw_code, r.description, r.location, r.occurred_at, received,
                r.payload) for r in rows]
    columns = ["dedupe_key", "carrier", "tracking_number", "carrier_event_id", "status",
               "status_rank", "raw_code", "description", "location", "occurred_at",
               "received_at", "payload"]
    conn = await asyncpg.connect(database_url)
    # jsonb's binary wire format is a version byte and the JSON text.
    await conn.set_type_codec("jsonb", encoder=lambda text: b"\x01" + text.encode(),
                              decoder=lambda data: data[1:].decode(), schema="pg_catalog",
                              format="binary")
    await conn.execute("TRUNCATE tracking_events, tracking_event_keys")
    started = time.perf_counter()
    await conn.copy_records_to_table("tracking_events", columns=columns, records=records)
    copy_rate = len(records) / (time.perf_counter() - started)
    await conn.execute("TRUNCATE tracking_events, tracking_event_keys")
    started = time.perf_counter()
    # Row by row as ingest dedupes: the key claimed first (migration 0013), then the event.
    await conn.executemany(
        "WITH k AS (INSERT INTO tracking_event_keys (dedupe_key, event_id, received_at) "
        "VALUES ($1, nextval('tracking_events_id_seq'), $11) ON CONFLICT DO NOTHING "
        f"RETURNING event_id) INSERT INTO tracking_events (id, {', '.join(columns)}) "
        "SELECT event_id, $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12 FROM k",
        records,
    )
    executemany_rate = len(records) / (time.perf_counter() - started)
    await conn.close()
    return copy_rate, executemany_rate


async def run(events_total: int, singles: int, shipments: int, concurrency: int
              ) -> list[dict[str, Any]]:
    async with ScratchDatabase() as db:
        key = await db.admin_key()
        await create_shipments(db.url, shipments)
        events = make_events(events_total, shipments, "b")
        bodies = [orjson.dumps({"events": events[i:i + 1000]})
                  for i in range(0, len(events), 1000)]
        single_bodies = [orjson.dumps(e) for e in make_events(singles, shipments, "s")]
        warm = [orjson.dumps({"events": make_events(2000, shipments, "w")[i:i + 1000]})
                for i in (0, 1000)]
        async with ServedApp(db.url) as app:
            await post_all(app.base, key, warm, 2)
            peak = [rss_mb(app.pid)]
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_rss(app.pid, peak, stop))
            batch_seconds = await post_all(app.base, key, bodies, concurrency)
            single_seconds = await post_all(app.base, key, single_bodies, 32)
            stop.set()
            await sampler
        conn = await asyncpg.connect(db.url)
        stored = await conn.fetchval("SELECT count(*) FROM tracking_events")
        await conn.close()
        if stored != events_total + singles + 2000:
            raise RuntimeError(f"stored {stored} events, sent {events_total + singles + 2000}")
        copy_rate, executemany_rate = await copy_floor(db.url, events)
    batch_rate = events_total / batch_seconds
    single_rate = singles / single_seconds
    return [
        {"figure": "batch ingest over HTTP (events/s)", "measured": round(batch_rate),
         "floor": f"raw COPY {round(copy_rate)} rows/s (executemany ON CONFLICT "
                  f"{round(executemany_rate)})",
         "ratio": batch_rate / copy_rate, "target": "≥ 25,000/s and ≥ 15% of COPY",
         "met": batch_rate >= 25_000 and batch_rate / copy_rate >= 0.15},
        {"figure": "single-event requests (req/s)", "measured": round(single_rate),
         "floor": None, "ratio": None, "target": "≥ 1,500/s", "met": single_rate >= 1500},
        {"figure": "service RSS under load (MB)", "measured": round(peak[0]), "floor": None,
         "ratio": None, "target": "≤ 300 MB", "met": peak[0] <= 300},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--singles", type=int, default=10_000)
    parser.add_argument("--shipments", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    rows = asyncio.run(run(args.events, args.singles, args.shipments, args.concurrency))
    write_result("ingest", rows, {"args": vars(args)})
    print(markdown(rows))


if __name__ == "__main__":
    main()
