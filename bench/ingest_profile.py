"""Where a 1,000-event batch's CPU goes: the ingest statement, the feed-quality flush and a
raw COPY of the same rows, in PostgreSQL and in this process, per 1,000 events.

    .venv/bin/python -m bench.ingest_profile [--rounds 12] [--shipments 20000]

The data is the ingest benchmark's (bench/bench_ingest.py: one event per shipment per batch),
measured twice: while the shipments are in transit, and once they are delivered (a scan
after delivery is what the feed-quality counters look hardest at). The server's CPU is read
from /proc/<backend pid>/stat before and after each statement, so PostgreSQL must run on this
machine; on a loaded machine CPU time is far steadier than wall time (both are printed). The
three are interleaved, each on its own connection and its own fresh events, every round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.bench_ingest import create_shipments, make_events, rows_of
from bench.common import ScratchDatabase
from service.store import events as events_db
from service.store import quality as quality_db
from service.store.events import EventRow, IngestResult

COLUMNS = ["dedupe_key", "carrier", "tracking_number", "carrier_event_id", "status",
           "status_rank", "raw_code", "description", "location", "occurred_at",
           "received_at", "payload", "substatus", "time_basis"]
BATCH = 1000


@dataclass
class Tally:
    wall_ms: list[float] = field(default_factory=list)
    server_s: float = 0.0
    client_s: float = 0.0

    def row(self, name: str) -> str:
        n = len(self.wall_ms)
        return (f"| {name} | {self.server_s * 1000 / n:.1f} | {self.client_s * 1000 / n:.1f} | "
                f"{min(self.wall_ms):.1f} | {statistics.median(self.wall_ms):.1f} |")


def backend_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) a PostgreSQL backend has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


async def measured(conn: asyncpg.Connection, tally: Tally, step: Awaitable[Any]) -> Any:
    pid = conn.get_server_pid()
    server, client, wall = backend_cpu(pid), time.process_time(), time.perf_counter()
    result = await step
    tally.wall_ms.append((time.perf_counter() - wall) * 1000)
    tally.server_s += backend_cpu(pid) - server
    tally.client_s += time.process_time() - client
    return result


async def flush(conn: asyncpg.Connection, rows: list[EventRow], result: IngestResult,
                at: datetime) -> None:
    """What the API's quality buffer does with a batch (QualityBuffer.flush)."""
    quality = quality_db.QualityBatch()
    quality.batch("api:bench", rows, result.accepted_keys, at, 0, result.after_delivery)
    await quality_db.record(conn, quality)


async def phase(url: str, shipments: int, rounds: int, tag: str) -> dict[str, Tally]:
    """`rounds` batches each of: ingest + its quality flush (one connection), raw COPY."""
    ingest_conn = await asyncpg.connect(url)
    copy_conn = await asyncpg.connect(url)
    # jsonb's binary wire format is a version byte and the JSON text (as bench_ingest's COPY).
    await copy_conn.set_type_codec("jsonb", encoder=lambda text: b"\x01" + text.encode(),
                                   decoder=lambda data: data[1:].decode(), schema="pg_catalog",
                                   format="binary")
    tallies = {"ingest statement": Tally(), "feed-quality flush": Tally(), "raw COPY": Tally()}
    try:
        for r in range(rounds):
            # Two fresh batches over different shipments: one ingested, one copied.
            rows = rows_of(make_events(2 * BATCH, shipments, f"{tag}{r}"))
            mine, copied = rows[:BATCH], rows[BATCH:]
            now = datetime.now(UTC)
            result = await measured(ingest_conn, tallies["ingest statement"],
                                    events_db.ingest(ingest_conn, mine, now))
            await measured(ingest_conn, tallies["feed-quality flush"],
                           flush(ingest_conn, mine, result, now))
            records = [(x.dedupe_key, x.carrier, x.tracking_number, x.carrier_event_id,
                        x.status, x.status_rank, x.raw_code, x.description, x.location,
                        x.occurred_at, now, x.payload, x.substatus, x.time_basis)
                       for x in copied]
            await measured(copy_conn, tallies["raw COPY"], copy_conn.copy_records_to_table(
                "tracking_events", columns=COLUMNS, records=records))
    finally:
        await ingest_conn.close()
        await copy_conn.close()
    return tallies


async def run(shipments: int, rounds: int) -> None:
    async with ScratchDatabase() as db:
        await create_shipments(db.url, shipments)
        conn = await asyncpg.connect(db.url)
        try:
            # Two events per shipment in transit, as the benchmark's first 40 % leave them.
            warm = rows_of(make_events(2 * shipments, shipments, "warm"))
            for i in range(0, len(warm), BATCH):
                await events_db.ingest(conn, warm[i:i + BATCH], datetime.now(UTC))
            moving = await phase(db.url, shipments, rounds, "t")
            # Then every shipment delivered (the benchmark's statuses, events 60-80 % of it).
            done = rows_of(make_events(4 * shipments, shipments, "done")[3 * shipments:])
            for i in range(0, len(done), BATCH):
                await events_db.ingest(conn, done[i:i + BATCH], datetime.now(UTC))
            delivered = await phase(db.url, shipments, rounds, "d")
        finally:
            await conn.close()
    print(f"per {BATCH:,} events, {rounds} batches each, {shipments:,} shipments")
    for name, tallies in (("in transit", moving), ("delivered", delivered)):
        print(f"\n{name}\n\n| step | PostgreSQL CPU ms | this process CPU ms | wall min ms "
              "| wall median ms |\n|---|---|---|---|---|")
        for step, tally in tallies.items():
            print(tally.row(step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--shipments", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(run(args.shipments, args.rounds))


if __name__ == "__main__":
    main()
