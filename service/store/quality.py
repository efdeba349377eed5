"""Feed data quality: counters per (day, source, carrier, measure), upserted once per batch.

Sources: "api:<key id>" (POST /v1/tracking-events), "shopify", "easypost", "aftership".
Measures (MEASURES documents each): counted by the caller (accepted, duplicate, rejected,
webhook_notes, estimate_before_shipment) or derived here from the batch's new events in the
same statement (unknown, naive_time:<rule>, late_24h, after_delivery). Trackers gone quiet
are a state, not a flow: `stale_trackers` reads them from the shipments when asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
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
    "after_delivery": "new events of a delivered shipment received after a delivery scan",
    "webhook_notes": "webhook deliveries stored with notes (parts not used)",
    "estimate_before_shipment": "carrier estimates received before their shipment (kept)",
}

RECORD = """
WITH ev AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[], $7::text[])
        AS t(source, carrier, tracking_number, status, occurred_at, received_at, time_basis)
), counts AS (
    SELECT (received_at AT TIME ZONE 'UTC')::date AS day, source, carrier,
           'unknown' AS measure, count(*) AS n
    FROM ev WHERE status = 'unknown' GROUP BY 1, 2, 3
    UNION ALL
    SELECT (received_at AT TIME ZONE 'UTC')::date, source, carrier,
           'naive_time:' || time_basis, count(*)
    FROM ev WHERE time_basis <> 'offset' GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT (received_at AT TIME ZONE 'UTC')::date, source, carrier, 'late_24h', count(*)
    FROM ev WHERE received_at - occurred_at > interval '24 hours' GROUP BY 1, 2, 3
    UNION ALL
    SELECT (received_at AT TIME ZONE 'UTC')::date, source, carrier, 'after_delivery', count(*)
    FROM ev
    -- Cheap first: only parcels whose shipment is delivered now have their events looked at.
    WHERE EXISTS (SELECT 1 FROM shipments s WHERE s.carrier = ev.carrier
                    AND s.tracking_number = ev.tracking_number AND s.status = 'delivered')
      AND EXISTS (SELECT 1 FROM tracking_events d
                  WHERE d.carrier = ev.carrier AND d.tracking_number = ev.tracking_number
                    AND d.status = 'delivered' AND d.received_at < ev.received_at)
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT * FROM unnest($8::date[], $9::text[], $10::text[], $11::text[], $12::bigint[])
)
INSERT INTO feed_quality (day, source, carrier, measure, count)
SELECT day, source, carrier, measure, sum(n) FROM counts
GROUP BY 1, 2, 3, 4 HAVING sum(n) > 0
ORDER BY 1, 2, 3, 4  -- one lock order for every writer
ON CONFLICT (day, source, carrier, measure) DO UPDATE
    SET count = feed_quality.count + EXCLUDED.count
"""


@dataclass
class QualityBatch:
    """What one or more batches add to the counters, written by `record` in one statement."""

    events: list[tuple[str, str, str, str, datetime, datetime, str]] = field(
        default_factory=list)
    counts: Counter[tuple[date, str, str, str]] = field(default_factory=Counter)

    def count(self, at: datetime, source: str, carrier: str, measure: str, n: int = 1) -> None:
        if n:
            self.counts[(at.astimezone(UTC).date(), source, carrier, measure)] += n

    def batch(self, source: str, rows: Sequence[EventRow], accepted_keys: set[bytes],
              at: datetime, rejected: int = 0) -> None:
        """A stored batch: accepted/duplicate per carrier, and its new events for the measures
        derived in SQL; `rejected` items count under carrier ''."""
        seen: set[bytes] = set()
        per_carrier: Counter[tuple[str, str]] = Counter()
        for row in rows:
            new = row.dedupe_key in accepted_keys and row.dedupe_key not in seen
            seen.add(row.dedupe_key)
            per_carrier[(row.carrier, "accepted" if new else "duplicate")] += 1
            if new:
                self.events.append((source, row.carrier, row.tracking_number, row.status,
                                    row.occurred_at, at, row.time_basis or "offset"))
        for (carrier, measure), n in per_carrier.items():
            self.count(at, source, carrier, measure, n)
        self.count(at, source, "", "rejected", rejected)

    def extend(self, other: QualityBatch) -> None:
        self.events.extend(other.events)
        self.counts.update(other.counts)

    def __bool__(self) -> bool:
        return bool(self.events or self.counts)


async def record(conn: asyncpg.Connection, batch: QualityBatch) -> None:
    """Add a batch to the counters (one statement; in the caller's transaction, if any)."""
    if not batch:
        return
    ev, counts = batch.events, list(batch.counts.items())
    await conn.execute(
        RECORD, [e[0] for e in ev], [e[1] for e in ev], [e[2] for e in ev], [e[3] for e in ev],
        [e[4] for e in ev], [e[5] for e in ev], [e[6] for e in ev],
        [k[0] for k, _ in counts], [k[1] for k, _ in counts], [k[2] for k, _ in counts],
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
