"""Tracking events: one statement that stores a batch, moves statuses and queues follow-up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.store.shipments import BEST_EVENT_ORDER, bump_revision, event_stats_over
from service.store.transient import retrying_contention
from service.store.work import CHANNEL, REFRESH_SHIPMENT

# A shipment's best event first (service.store.shipments), its "unknown" ones after all others.
_BEST = f"status = 'unknown', {BEST_EVENT_ORDER}"
# The batch's best event outranks the shipment's current status.
_MOVES = ("m.best_status IS NOT NULL AND (m.best_rank, m.best_at)"
          " > (s.status_rank, coalesce(s.status_occurred_at, '-infinity'))")


class EventRow(msgspec.Struct, frozen=True, gc=False):
    """One event as stored (a Struct: built a thousand times per request, and holding only
    scalars it needs no place in the cycle collector)."""

    dedupe_key: bytes
    carrier: str
    tracking_number: str
    carrier_event_id: str | None
    status: str
    status_rank: int
    raw_code: str | None
    description: str | None
    location: str | None  # JSON text
    occurred_at: datetime
    payload: str  # JSON text
    substatus: str | None = None  # finer meaning from the carrier tables
    time_basis: str | None = None  # how occurred_at was found (service.zones.Resolved.basis)


# One round trip, one implicit transaction, in one of two forms that share the fold below.
#
# INGEST skips duplicates (stored before, or within the batch): each event's dedupe key is
# claimed in tracking_event_keys first (the partitioned tracking_events cannot hold a unique
# key without its partition key, the month it was stored in; migration 0013), and only the
# claimed ones are stored, with the id the claim took; the batch holds each key once
# (ingest keeps the first of a key, as the table's own unique key did before).
#
# INGEST_NEW is the same for a batch none of whose keys is stored yet, the common case: the
# keys are inserted plainly (one index descent each, no ON CONFLICT pre-check, no join of the
# claims back to the events, no row per event returned), and a key that is stored after all
# fails the statement (unique_violation, nothing written), which `ingest` then runs as INGEST.
#
# The new events are folded into their shipments' derived state with the rules of
# service.store.shipments (EVENT_STATS, BEST_EVENT_ORDER): the status only moves to an event
# that ranks higher by (status_rank, occurred_at), so arrival order never matters and a late
# "in transit" never un-delivers. Events for tracking numbers the OMS has not sent yet are
# simply stored; the shipment upsert derives from them later.
# The batch's text columns travel packed when they can: one text per column, its values
# joined by US (\x1f), a null as RS (\x1e), split by string_to_array. asyncpg spends about
# a microsecond of this process's CPU per array element (an isinstance check against
# collections.abc for each), 9 ms per 1,000 events for these ten columns; packed, 2 ms
# (and PostgreSQL 0.4 ms more). A column whose values hold either character goes as an array.
_SEP, _NULL = "\x1f", "\x1e"
_TEXT_COLUMNS = ("carrier", "tracking_number", "carrier_event_id", "status", "raw_code",
                 "description", "location", "payload", "substatus", "time_basis")


def _unnest(packed: bool) -> str:
    """The batch as rows; its parameters as `_arguments` gives them."""

    def text(n: int) -> str:
        return f"string_to_array(${n}::text, E'\\x1f', E'\\x1e')" if packed else f"${n}::text[]"

    return f"""unnest($1::bytea[], {text(2)}, {text(3)}, {text(4)}, {text(5)}, $6::smallint[],
                         {text(7)}, {text(8)}, {text(9)}, $10::timestamptz[], {text(11)},
                         {text(15)}, {text(16)})
        AS t(dedupe_key, carrier, tracking_number, carrier_event_id, status, status_rank,
             raw_code, description, location, occurred_at, payload, substatus, time_basis)"""


def _packed(values: list[Any]) -> str | None:
    """The column as one text, or None when that would not read back the same."""
    text = _SEP.join(_NULL if v is None else v for v in values)
    if (not text or text.count(_SEP) != len(values) - 1
            or text.count(_NULL) != values.count(None)):
        return None  # a value holds a separator, or the column is one empty text ('' -> {})
    return text


def _arguments(batch: Sequence[EventRow], received_at: datetime
               ) -> tuple[bool, tuple[Any, ...]]:
    """(packed, the parameters of INGEST and INGEST_NEW)."""
    texts: dict[str, Any] = {name: [getattr(r, name) for r in batch] for name in _TEXT_COLUMNS}
    packed = {name: _packed(values) for name, values in texts.items()}
    ok = None not in packed.values()
    t = packed if ok else texts
    return ok, (
        [r.dedupe_key for r in batch], t["carrier"], t["tracking_number"],
        t["carrier_event_id"], t["status"], [r.status_rank for r in batch], t["raw_code"],
        t["description"], t["location"], [r.occurred_at for r in batch], t["payload"],
        received_at, REFRESH_SHIPMENT, CHANNEL, t["substatus"], t["time_basis"],
    )


_EVENT_COLUMNS = """(id, dedupe_key, carrier, tracking_number, carrier_event_id,
                                 status, status_rank, raw_code, description, location,
                                 occurred_at, received_at, payload, substatus, time_basis)"""
_EVENT_VALUES = """carrier, tracking_number, carrier_event_id, status,
           status_rank, raw_code, description, location::jsonb, occurred_at, $12,
           payload::jsonb, substatus, time_basis"""


def _fold(new: str) -> str:
    """The CTEs that fold the stored events (the relation `new`: id, carrier, tracking_number,
    status, status_rank, occurred_at, substatus) into their shipments (`touched`, with
    `after_delivery`) and queue their refreshes (`queued`)."""
    return f"""moved AS (
    -- One row per shipment in one sort, no join: the batch's counts (over all its events)
    -- and its best event ("unknown" ones sort last and move no status).
    SELECT DISTINCT ON (carrier, tracking_number) carrier, tracking_number,
           {event_stats_over("w")},
           CASE WHEN status <> 'unknown' THEN status END AS best_status,
           CASE WHEN status <> 'unknown' THEN status_rank END AS best_rank,
           CASE WHEN status <> 'unknown' THEN occurred_at END AS best_at,
           CASE WHEN status <> 'unknown' THEN substatus END AS best_substatus
    FROM {new}
    WINDOW w AS (PARTITION BY carrier, tracking_number ORDER BY {_BEST}
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ORDER BY carrier, tracking_number, {_BEST}
), touched AS (
    UPDATE shipments s SET
        event_count = s.event_count + m.n, {bump_revision("s")},
        last_event_at = greatest(s.last_event_at, m.last_at),
        first_scan_at = least(s.first_scan_at, m.first_scan_at),
        status = CASE WHEN {_MOVES} THEN m.best_status ELSE s.status END,
        status_occurred_at = CASE WHEN {_MOVES} THEN m.best_at ELSE s.status_occurred_at END,
        status_rank = CASE WHEN {_MOVES} THEN m.best_rank ELSE s.status_rank END,
        substatus = CASE WHEN {_MOVES} THEN m.best_substatus ELSE s.substatus END,
        delivered_at = CASE
            WHEN (CASE WHEN {_MOVES} THEN m.best_status ELSE s.status END) <> 'delivered'
                THEN NULL
            ELSE least(CASE WHEN s.status = 'delivered' THEN s.delivered_at END,
                       m.delivered_at) END
    FROM moved m
    WHERE s.carrier = m.carrier AND s.tracking_number = m.tracking_number
    -- Delivered before this batch and still delivered: the batch's events came after a
    -- delivery scan. Still delivered with no delivery in the batch, or delivered earlier than
    -- the batch's delivery, it was delivered before; else the subquery reads the row as the
    -- statement found it (RETURNING shows the new one).
    RETURNING s.shipment_id, s.carrier, s.tracking_number,
              CASE WHEN s.status <> 'delivered' THEN false
                   WHEN m.delivered_at IS NULL OR s.delivered_at < m.delivered_at THEN true
                   ELSE EXISTS (SELECT FROM shipments o WHERE o.shipment_id = s.shipment_id
                                                          AND o.status = 'delivered') END
                  AS after_delivery
), queued AS (
    INSERT INTO work_items (kind, subject_id, run_after, created_at)
    SELECT $13, shipment_id, $12, $12 FROM touched
    ON CONFLICT (kind, subject_id) WHERE state = 'pending' DO NOTHING
    RETURNING 1
)"""


# Wakes the relay at commit; uncorrelated, so evaluated once.
_NOTIFIED = "(SELECT count(pg_notify($14, '')) FROM (SELECT 1 FROM queued LIMIT 1) q)"


def _checked(packed: bool) -> str:
    """INGEST: a row per new event, with its key and whether it came after a delivery."""
    return f"""
WITH input AS (
    SELECT * FROM {_unnest(packed)}
), claimed AS (
    INSERT INTO tracking_event_keys (dedupe_key, event_id, received_at)
    SELECT dedupe_key, nextval('tracking_events_id_seq'), $12 FROM input
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING dedupe_key, event_id
), inserted AS (
    INSERT INTO tracking_events {_EVENT_COLUMNS}
    SELECT c.event_id, i.dedupe_key, {_EVENT_VALUES}
    FROM input i JOIN claimed c ON c.dedupe_key = i.dedupe_key
    RETURNING id, dedupe_key, carrier, tracking_number, status, status_rank, occurred_at,
              substatus
), {_fold("inserted")}
SELECT i.dedupe_key, d.carrier IS NOT NULL AS after_delivery,
       (SELECT count(*) FROM touched) AS touched, {_NOTIFIED} AS notified
FROM inserted i
LEFT JOIN (SELECT carrier, tracking_number FROM touched WHERE after_delivery) d
    USING (carrier, tracking_number)
"""


def _new(packed: bool) -> str:
    """INGEST_NEW: every event is new (else unique_violation on tracking_event_keys_pkey).
    One row back, with the shipments delivered before the batch (all of their batch's events
    came after it)."""
    return f"""
WITH input AS MATERIALIZED (
    SELECT nextval('tracking_events_id_seq') AS id, * FROM {_unnest(packed)}
), claimed AS (
    INSERT INTO tracking_event_keys (dedupe_key, event_id, received_at)
    SELECT dedupe_key, id, $12 FROM input
), inserted AS (
    INSERT INTO tracking_events {_EVENT_COLUMNS}
    SELECT id, dedupe_key, {_EVENT_VALUES}
    FROM input
), {_fold("input")}
SELECT count(*) AS touched, {_NOTIFIED} AS notified,
       array_agg(carrier) FILTER (WHERE after_delivery) AS carriers,
       array_agg(tracking_number) FILTER (WHERE after_delivery) AS numbers
FROM touched
"""


# Keyed by packed (see _arguments).
INGEST = {packed: _checked(packed) for packed in (True, False)}
INGEST_NEW = {packed: _new(packed) for packed in (True, False)}


@dataclass(frozen=True)
class IngestResult:
    accepted_keys: set[bytes]
    shipments_touched: int
    # The new events of shipments delivered before them (and still delivered): the
    # feed-quality measure `after_delivery` (service.store.quality).
    after_delivery: set[bytes] = field(default_factory=set)


# After a batch that held a stored key, this process's next batches go to INGEST at once: a
# stream of resends fails INGEST_NEW at most once in CHECKED_AFTER_DUPLICATE + 1 batches (the
# work done before the failure is wasted, and PostgreSQL logs the error).
CHECKED_AFTER_DUPLICATE = 20


@dataclass
class _Recent:
    checked_next: int = 0


_recent = _Recent()


async def ingest(
    conn: asyncpg.Connection, rows: Sequence[EventRow], received_at: datetime
) -> IngestResult:
    """Store new events, update their shipments, queue refreshes; report which were new."""
    if not rows:
        return IngestResult(set(), 0)
    # Two batches updating the same shipments in another order may deadlock; the statement
    # is atomic, so running it again is safe.
    return await retrying_contention(lambda: _ingest_once(conn, rows, received_at))


async def _ingest_once(
    conn: asyncpg.Connection, rows: Sequence[EventRow], received_at: datetime
) -> IngestResult:
    first: dict[bytes, EventRow] = {}
    for row in rows:
        first.setdefault(row.dedupe_key, row)
    batch = list(first.values()) if len(first) < len(rows) else rows
    packed, args = _arguments(batch, received_at)
    result = None
    # Inside the caller's transaction a failed statement would end it: there (webhook
    # deliveries, which are often resent) duplicates are looked for from the start.
    if _recent.checked_next:
        _recent.checked_next -= 1
    elif not conn.is_in_transaction():
        result = await _ingest_new(conn, batch, INGEST_NEW[packed], args)
        if result is None:
            _recent.checked_next = CHECKED_AFTER_DUPLICATE
    if result is None:
        records = await conn.fetch(INGEST[packed], *args)
        accepted = {bytes(r["dedupe_key"]) for r in records}
        result = IngestResult(
            accepted, int(records[0]["touched"]) if records else 0,
            {bytes(r["dedupe_key"]) for r in records if r["after_delivery"]})
    # Only a code we could not read counts (an event sent as plain "unknown" has none).
    unknown = [r for r in rows if r.status == "unknown" and r.raw_code
               and r.dedupe_key in result.accepted_keys]
    if unknown:
        await count_unknown(conn, unknown, received_at)
    return result


async def _ingest_new(conn: asyncpg.Connection, rows: Sequence[EventRow], statement: str,
                      args: tuple[Any, ...]) -> IngestResult | None:
    """INGEST_NEW; None when one of the keys was stored already (nothing was written)."""
    try:
        record = await conn.fetchrow(statement, *args)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "tracking_event_keys_pkey":
            raise
        return None
    assert record is not None
    delivered = set(zip(record["carriers"] or (), record["numbers"] or (), strict=True))
    after = {r.dedupe_key for r in rows if (r.carrier, r.tracking_number) in delivered}
    return IngestResult({r.dedupe_key for r in rows}, int(record["touched"]), after)


# Codes no table maps, counted per carrier and code for `parcelcast carriers unknown`.
COUNT_UNKNOWN = """
INSERT INTO carrier_unknown_codes AS u (carrier, code, events, first_seen_at, last_seen_at,
                                        sample_description)
SELECT carrier, code, count(*), $4, $4, max(description)
FROM unnest($1::text[], $2::text[], $3::text[]) AS t(carrier, code, description)
GROUP BY carrier, code
ON CONFLICT (carrier, code) DO UPDATE SET
    events = u.events + EXCLUDED.events,
    last_seen_at = greatest(u.last_seen_at, EXCLUDED.last_seen_at),
    sample_description = coalesce(EXCLUDED.sample_description, u.sample_description)
"""


async def count_unknown(conn: asyncpg.Connection, rows: Sequence[EventRow], seen_at: datetime
                        ) -> None:
    """Count newly stored events whose code no table maps (never a status change)."""
    await conn.execute(COUNT_UNKNOWN, [r.carrier for r in rows],
                       [(r.raw_code or "")[:64] for r in rows],
                       [(r.description or "")[:300] or None for r in rows], seen_at)
