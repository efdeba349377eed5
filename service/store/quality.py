"""Feed data quality: counters per (day, source, carrier, measure), upserted once per batch.

Sources: "api:<key id>" (POST /v1/tracking-events), "shopify", "easypost", "aftership".
Measures (MEASURES documents each): counted by the caller (accepted, duplicate, rejected,
webhook_notes, estimate_before_shipment) or derived from the batch's new events by
QualityBatch.batch (unknown, naive_time:<rule>, late_24h, after_delivery). Trackers gone quiet
are a state, not a flow: `stale_trackers` reads them from the shipments when asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec

from service.store.events import EventRow
from service.store.shipments import UNFINISHED

log = logging.getLogger(__name__)

MEASURES: dict[str, str] = {
    "accepted": "events stored (new)",
    "duplicate": "events already stored (a resend or a replay)",
    "rejected": "events or deliveries refused for their content (4xx / per-item errors)",
    "unknown": "new events whose carrier code maps to no status (stored as 'unknown')",
    "naive_time:<rule>": "new events sent without an offset, by the rule that placed them "
                         "(service.zones: zip, postal_code, city_region, region, country, "
                         "city, origin, utc_default)",
    "late_24h": "new events received more than 24 h after they happened",
    "after_delivery": "new events of a delivered shipment received after a delivery scan "
                      "(delivered before their batch and still after it)",
    "webhook_notes": "webhook deliveries stored with notes (parts not used)",
    "estimate_before_shipment": "carrier estimates received before their shipment (kept)",
}

# Every measure is counted by the caller (QualityBatch.batch derives the ones of new events
# from the batch and what ingest found, service.store.events.IngestResult.after_delivery);
# this adds them up, one row per (day, source, carrier, measure).
RECORD = """
INSERT INTO feed_quality (day, source, carrier, measure, count)
SELECT * FROM unnest($1::date[], $2::text[], $3::text[], $4::text[], $5::bigint[])
ORDER BY 1, 2, 3, 4  -- one lock order for every writer
ON CONFLICT (day, source, carrier, measure) DO UPDATE
    SET count = feed_quality.count + EXCLUDED.count
"""

LATE = timedelta(hours=24)


@dataclass
class QualityBatch:
    """What one or more batches add to the counters, written by `record` in one statement."""

    counts: Counter[tuple[date, str, str, str]] = field(default_factory=Counter)

    def count(self, at: datetime, source: str, carrier: str, measure: str, n: int = 1) -> None:
        if n:
            self.counts[(at.astimezone(UTC).date(), source, carrier, measure)] += n

    def batch(self, source: str, rows: Sequence[EventRow], accepted_keys: set[bytes],
              at: datetime, rejected: int = 0, after_delivery: Set[bytes] = frozenset()
              ) -> None:
        """A stored batch received `at`: accepted/duplicate per carrier, the measures of its
        new events (unknown, naive_time:<rule>, late_24h; after_delivery: the new events
        ingest found for shipments already delivered), and `rejected` items under carrier ''."""
        seen: set[bytes] = set()
        per_carrier: Counter[tuple[str, str]] = Counter()
        late_before = at - LATE
        for row in rows:
            key = row.dedupe_key
            if key not in accepted_keys or key in seen:
                per_carrier[(row.carrier, "duplicate")] += 1
                continue
            seen.add(key)
            carrier = row.carrier
            per_carrier[(carrier, "accepted")] += 1
            if row.status == "unknown":
                per_carrier[(carrier, "unknown")] += 1
            if row.time_basis and row.time_basis != "offset":
                per_carrier[(carrier, f"naive_time:{row.time_basis}")] += 1
            if row.occurred_at < late_before:
                per_carrier[(carrier, "late_24h")] += 1
            if key in after_delivery:
                per_carrier[(carrier, "after_delivery")] += 1
        for (carrier, measure), n in per_carrier.items():
            self.count(at, source, carrier, measure, n)
        self.count(at, source, "", "rejected", rejected)

    def extend(self, other: QualityBatch) -> None:
        self.counts.update(other.counts)

    def __bool__(self) -> bool:
        return bool(self.counts)


async def record(conn: asyncpg.Connection, batch: QualityBatch) -> None:
    """Add a batch to the counters (one statement; in the caller's transaction, if any)."""
    if not batch:
        return
    counts = list(batch.counts.items())
    await conn.execute(
        RECORD, [k[0] for k, _ in counts], [k[1] for k, _ in counts], [k[2] for k, _ in counts],
        [k[3] for k, _ in counts], [n for _, n in counts])


class Counted(msgspec.Struct, frozen=True):
    source: str
    carrier: str
    measure: str
    count: int


async def totals(conn: asyncpg.Connection, since: date | None = None) -> list[Counted]:
    """The counters summed over days (all days, or from `since` on)."""
    rows = await conn.fetch(
        """SELECT source, carrier, measure, sum(count)::bigint AS count FROM feed_quality
           WHERE $1::date IS NULL OR day >= $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""", since)
    return [Counted(r["source"], r["carrier"], r["measure"], r["count"]) for r in rows]


async def stale_trackers(conn: asyncpg.Connection, now: datetime, days: float
                         ) -> dict[str, int]:
    """Unfinished shipments without a scan for `days`, per carrier."""
    rows = await conn.fetch(
        f"""SELECT carrier, count(*) AS n FROM shipments
            WHERE {UNFINISHED}
              AND coalesce(last_event_at, label_created_at, created_at) < $1::timestamptz - $2::interval
            GROUP BY carrier ORDER BY carrier""", now, timedelta(days=days))
    return {r["carrier"]: int(r["n"]) for r in rows}


class QualityBuffer:
    """Counters of small API requests, gathered in the process and written every `every`
    seconds (and when the app stops), so a single-event request pays no extra statement."""

    def __init__(self, pool: asyncpg.Pool, every: float = 1.0) -> None:
        self.pool = pool
        self.every = every
        self._pending = QualityBatch()

    def add(self, batch: QualityBatch) -> None:
        self._pending.extend(batch)

    async def flush(self) -> None:
        pending, self._pending = self._pending, QualityBatch()
        if not pending:
            return
        try:
            async with self.pool.acquire() as conn:
                await record(conn, pending)
        except (asyncpg.PostgresError, OSError):
            self._pending.extend(pending)  # kept for the next flush
            raise

    async def run(self) -> None:
        """Flush forever (cancel to stop); a failed flush is retried on the next tick."""
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.flush()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("data-quality counters not written: %s", exc)
