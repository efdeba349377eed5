"""Shipments: upserts from the OMS, derived state, and the reads agents use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from service.inputs import ShipmentIn
from service.store import work
from service.tracking.numbers import normalized_tracking_number
from service.tracking.taxonomy import NOT_CARRIER_SCANS, TERMINAL, sql_list


class Shipment(msgspec.Struct, frozen=True, kw_only=True):
    """A shipment as stored: what the OMS said, and the state derived from its events."""

    shipment_id: str
    order_id: str
    carrier: str
    service_level: str
    tracking_number: str
    origin_postal_code: str | None
    origin_country: str | None
    destination_postal_code: str | None
    destination_country: str | None
    weight_grams: int | None
    promised_delivery_date: date | None
    label_created_at: datetime | None
    shipped_at: datetime | None
    status: str
    status_rank: int
    status_occurred_at: datetime | None
    delivered_at: datetime | None
    event_count: int
    last_event_at: datetime | None
    first_scan_at: datetime | None
    derived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    eta_id: int | None
    eta_p10: datetime | None
    eta_p50: datetime | None
    eta_p90: datetime | None
    shown_date: date | None
    pending_date: date | None
    carrier_estimated_delivery: date | None
    carrier_estimate_source: str | None
    carrier_estimate_as_of: datetime | None
    lost_at: datetime | None = None  # declared lost by an agent (service.support.actions)
    substatus: str | None = None  # the status event's finer meaning (carrier tables)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def lost(self) -> bool:
        """Declared lost and not finished since (a carrier's final scan overrules an agent)."""
        return self.lost_at is not None and self.status not in TERMINAL


class TimelineEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One stored scan of a shipment, as its timeline shows it."""

    id: int
    carrier_event_id: str | None
    status: str
    raw_code: str | None
    description: str | None
    location: dict[str, str] | None
    occurred_at: datetime
    received_at: datetime
    substatus: str | None = None


COLUMNS = ", ".join(Shipment.__struct_fields__)
TIMELINE_COLUMNS = ", ".join(TimelineEvent.__struct_fields__)
# Still moving: not in a final status and not declared lost (used as `s.{UNFINISHED}`; the
# second column is left unqualified so the fragment reads the same with or without an alias).
UNFINISHED = f"status NOT IN {sql_list(TERMINAL)} AND lost_at IS NULL"
# Ended without a delivery to the customer: returned to sender, or declared lost (and no
# final scan since); a cancelled shipment never shipped, and is neither (same use as above).
NEVER_DELIVERED = (f"(status = 'returned_to_sender' OR (lost_at IS NOT NULL "
                   f"AND status NOT IN {sql_list(TERMINAL)}))")


def bump_revision(table: str) -> str:
    """The SET item every statement that changes a shipment's ETA inputs (its OMS fields,
    its carrier's estimate, its scans) carries, in that same statement: ETAs are ordered by
    the revision they were predicted from (service.store.etas.STORE), not by a clock."""
    return f"revision = {table}.revision + 1"


UPSERT = f"""
INSERT INTO shipments (shipment_id, order_id, carrier, service_level, tracking_number,
                       origin_postal_code, origin_country, destination_postal_code,
                       destination_country, weight_grams, promised_delivery_date,
                       label_created_at, shipped_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)
ON CONFLICT (shipment_id) DO UPDATE SET
    order_id = EXCLUDED.order_id, carrier = EXCLUDED.carrier,
    service_level = EXCLUDED.service_level, tracking_number = EXCLUDED.tracking_number,
    origin_postal_code = EXCLUDED.origin_postal_code, origin_country = EXCLUDED.origin_country,
    destination_postal_code = EXCLUDED.destination_postal_code,
    destination_country = EXCLUDED.destination_country, weight_grams = EXCLUDED.weight_grams,
    promised_delivery_date = EXCLUDED.promised_delivery_date,
    label_created_at = EXCLUDED.label_created_at, shipped_at = EXCLUDED.shipped_at,
    updated_at = EXCLUDED.updated_at, {bump_revision("shipments")}
RETURNING (xmax = 0) AS created
"""

# How a shipment's state follows from its events; the one home of these rules (the ingest
# statement in service.store.events folds a new batch in with the same fragments):
# - status: its event with the highest (status_rank, occurred_at, id), ignoring "unknown";
# - delivered_at: the first "delivered" event, while the status is "delivered";
# - first_scan_at: the first event of a carrier handling the parcel (its handover);
# - event_count, last_event_at: over all its events.
_STATS = (
    ("n", "count(*)"),
    ("last_at", "max(occurred_at)"),
    ("delivered_at", "min(occurred_at) FILTER (WHERE status = 'delivered')"),
    ("first_scan_at",
     f"min(occurred_at) FILTER (WHERE status NOT IN {sql_list(NOT_CARRIER_SCANS)})"),
)
EVENT_STATS = ",\n    ".join(f"{aggregate} AS {name}" for name, aggregate in _STATS)


def event_stats_over(window: str) -> str:
    """EVENT_STATS as window aggregates over `window` (its frame: all of a shipment's rows)."""
    return ",\n    ".join(f"{aggregate} OVER {window} AS {name}" for name, aggregate in _STATS)


BEST_EVENT_ORDER = "status_rank DESC, occurred_at DESC, id DESC"


# A sender's partial view of a shipment (webhooks): a new row is inserted whole; a stored
# row changes only in the columns the sender stated ($15), and only if nothing has written
# it since `not_after` ($16; re-processing passes the delivery's receipt time, so an old
# delivery never undoes a later API call or delivery). Our own PUT stays UPSERT above.
MERGE_COLUMNS = {
    "order_id": "order_id", "carrier": "carrier", "service_level": "service_level",
    "tracking_number": "tracking_number", "origin.postal_code": "origin_postal_code",
    "origin.country": "origin_country", "destination.postal_code": "destination_postal_code",
    "destination.country": "destination_country", "weight_grams": "weight_grams",
    "promised_delivery_date": "promised_delivery_date", "label_created_at": "label_created_at",
    "shipped_at": "shipped_at",
}
MERGE = UPSERT.split("ON CONFLICT")[0].replace(
    "created_at, updated_at)", "created_at, updated_at, source_updated_at)").replace(
    "$14, $14)", "$14, $14, $17)") + "ON CONFLICT (shipment_id) DO UPDATE SET\n" + "".join(
    f"    {column} = CASE WHEN '{column}' = ANY($15::text[]) THEN EXCLUDED.{column} "
    f"ELSE shipments.{column} END,\n" for column in MERGE_COLUMNS.values()
) + f"""    updated_at = EXCLUDED.updated_at, {bump_revision("shipments")},
    source_updated_at = greatest(shipments.source_updated_at, EXCLUDED.source_updated_at)
WHERE ($16::timestamptz IS NULL OR shipments.updated_at <= $16::timestamptz)
  -- The sender's own version time ($17, e.g. Shopify's updated_at): an older one delivered
  -- late changes nothing.
  AND ($17::timestamptz IS NULL OR shipments.source_updated_at IS NULL
       OR shipments.source_updated_at <= $17::timestamptz)
RETURNING (xmax = 0) AS created, carrier, tracking_number
"""


class TrackingNumberTaken(Exception):
    """Another shipment already uses this carrier + tracking number."""


async def upsert(
    conn: asyncpg.Connection, shipment_id: str, shipment: ShipmentIn, now: datetime
) -> bool:
    """Insert or replace the shipment, re-derive its status, and queue its refresh.

    Runs in the caller's transaction; True when the shipment was new.
    """
    try:
        created: bool = await conn.fetchval(
            UPSERT, shipment_id, shipment.order_id, shipment.carrier, shipment.service_level,
            shipment.tracking_number, shipment.origin.postal_code, shipment.origin.country,
            shipment.destination.postal_code, shipment.destination.country,
            shipment.weight_grams, shipment.promised_delivery_date,
            shipment.label_created_at, shipment.shipped_at, now,
        )
    except asyncpg.UniqueViolationError as exc:
        raise TrackingNumberTaken(shipment.carrier, shipment.tracking_number) from exc
    await rederive_many(conn, [shipment_id], now)
    await conn.execute(ADOPT_ESTIMATES, [shipment_id])
    await work.add(conn, work.REFRESH_SHIPMENT, [shipment_id], now)
    return created


async def merge(
    conn: asyncpg.Connection, shipment_id: str, shipment: ShipmentIn, carried: Iterable[str],
    now: datetime, not_after: datetime | None = None, version: datetime | None = None,
) -> bool | None:
    """A sender's view of a shipment (see MERGE): True when new, False when updated, None when
    the stored row changed after `not_after`, or holds a newer `version` of the sender's (its
    updated_at), and was left as it is.

    Like upsert, re-derives the status and queues the refresh; runs in the caller's transaction.
    """
    columns = sorted(MERGE_COLUMNS[name] for name in carried)
    try:
        row = await conn.fetchrow(
            MERGE, shipment_id, shipment.order_id, shipment.carrier, shipment.service_level,
            shipment.tracking_number, shipment.origin.postal_code, shipment.origin.country,
            shipment.destination.postal_code, shipment.destination.country,
            shipment.weight_grams, shipment.promised_delivery_date,
            shipment.label_created_at, shipment.shipped_at, now, columns, not_after, version,
        )
    except asyncpg.UniqueViolationError as exc:
        raise TrackingNumberTaken(shipment.carrier, shipment.tracking_number) from exc
    if row is None:
        return None
    await rederive_many(conn, [shipment_id], now)
    await conn.execute(ADOPT_ESTIMATES, [shipment_id])
    await work.add(conn, work.REFRESH_SHIPMENT, [shipment_id], now)
    return bool(row["created"])


# The derived state of many shipments in one statement, from all of their events. The rows
# are locked first, in shipment_id order (lock_in_order): two statements over overlapping
# shipments (a worker's batch, the API's ingest) then wait for each other instead of
# deadlocking, whatever join order the planner picks for the update.
def lock_in_order(*columns: str) -> str:
    """The CTE `locked`: the shipments $1 locked in shipment_id order, with `columns` as the
    locking read returns them (a row's newest version, once its lock was waited for)."""
    return f"""
locked AS (SELECT {", ".join(("shipment_id", *columns))} FROM shipments
           WHERE shipment_id = ANY($1::text[]) ORDER BY shipment_id FOR NO KEY UPDATE)"""


LOCK_IN_ORDER = lock_in_order()
DERIVE_MANY = f"""
WITH {LOCK_IN_ORDER}
UPDATE shipments s SET
    status = coalesce(b.status, 'label_created'),
    status_rank = coalesce(b.status_rank, 0),
    status_occurred_at = b.occurred_at,
    substatus = b.substatus,
    delivered_at = CASE WHEN b.status = 'delivered' THEN st.delivered_at END,
    event_count = st.n, last_event_at = st.last_at, first_scan_at = st.first_scan_at,
    derived_at = $2
FROM shipments s0
LEFT JOIN LATERAL (
    SELECT status, status_rank, occurred_at, substatus FROM tracking_events e
    WHERE e.carrier = s0.carrier AND e.tracking_number = s0.tracking_number
      AND e.status <> 'unknown'
    ORDER BY {BEST_EVENT_ORDER} LIMIT 1) b ON true
CROSS JOIN LATERAL (
    SELECT {EVENT_STATS}
    FROM tracking_events e
    WHERE e.carrier = s0.carrier AND e.tracking_number = s0.tracking_number) st
WHERE s0.shipment_id IN (SELECT shipment_id FROM locked) AND s.shipment_id = s0.shipment_id
"""


# A tracker's estimate kept before the shipment existed (or before its tracking number
# changed to this one) is taken by the rule of service.store.webhooks.SET_ESTIMATE.
ADOPT_ESTIMATES = f"""
UPDATE shipments s SET carrier_estimated_delivery = e.delivery_date,
                       carrier_estimate_source = e.source, carrier_estimate_as_of = e.as_of,
                       {bump_revision("s")}
FROM carrier_estimates e
WHERE s.shipment_id = ANY($1::text[]) AND e.carrier = s.carrier
  AND e.tracking_number = s.tracking_number
  AND (s.carrier_estimate_as_of IS NULL OR e.as_of >= s.carrier_estimate_as_of)
  AND (s.carrier_estimated_delivery, s.carrier_estimate_source)
      IS DISTINCT FROM (e.delivery_date, e.source)
"""


async def rederive_many(conn: asyncpg.Connection, shipment_ids: list[str], now: datetime) -> None:
    """Recompute the derived state of several shipments in one statement (rows locked in
    shipment_id order)."""
    await conn.execute(DERIVE_MANY, sorted(set(shipment_ids)), now)


async def get(conn: asyncpg.Connection, shipment_id: str) -> Shipment | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM shipments WHERE shipment_id = $1",
                              shipment_id)
    return Shipment(**row) if row else None


async def get_many(conn: asyncpg.Connection, shipment_ids: list[str]) -> list[Shipment]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM shipments WHERE shipment_id = ANY($1::text[])", shipment_ids)
    return [Shipment(**r) for r in rows]


async def get_locked(conn: asyncpg.Connection, shipment_id: str) -> Shipment | None:
    """The shipment as committed now, locked until the caller's transaction ends: what
    planning decides on, so two refreshes of one shipment plan one after the other, each on
    the newest state (an older snapshot must never supersede newer news)."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM shipments WHERE shipment_id = $1 FOR UPDATE", shipment_id)
    return Shipment(**row) if row else None


async def find(
    conn: asyncpg.Connection, *, tracking_number: str | None = None, order_id: str | None = None,
    limit: int = 100,
) -> list[Shipment]:
    """Shipments by tracking number (matched normalized, as stored) and/or order."""
    if tracking_number is not None:
        tracking_number = normalized_tracking_number(tracking_number)
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM shipments
            WHERE ($1::text IS NULL OR tracking_number = $1)
              AND ($2::text IS NULL OR order_id = $2)
            ORDER BY created_at, shipment_id LIMIT $3""",
        tracking_number, order_id, limit,
    )
    return [Shipment(**r) for r in rows]


async def timeline(conn: asyncpg.Connection, carrier: str, tracking_number: str
                   ) -> list[TimelineEvent]:
    """Every stored event of a tracking number, oldest first by when it happened."""
    rows = await conn.fetch(
        f"""SELECT {TIMELINE_COLUMNS}
            FROM tracking_events WHERE carrier = $1 AND tracking_number = $2
            ORDER BY occurred_at, id""",
        carrier, tracking_number,
    )
    return [TimelineEvent(**r) for r in rows]


async def raw_payloads(conn: asyncpg.Connection, carrier: str, tracking_number: str
                       ) -> dict[int, dict[str, Any]]:
    """Each stored event's payload as its sender sent it, by event id."""
    rows = await conn.fetch(
        "SELECT id, payload FROM tracking_events WHERE carrier = $1 AND tracking_number = $2",
        carrier, tracking_number)
    return {r["id"]: r["payload"] for r in rows}


async def set_shown_date(conn: asyncpg.Connection, shipment_id: str, shown: date | None,
                         pending: date | None) -> None:
    await conn.execute(
        "UPDATE shipments SET shown_date = $2, pending_date = $3 WHERE shipment_id = $1",
        shipment_id, shown, pending)


async def sweep_candidates(conn: asyncpg.Connection, now: datetime, stalled_after: timedelta,
                           limit: int = 5000, recheck_after: timedelta = timedelta(hours=1),
                           ) -> list[str]:
    """Unfinished shipments that may have stalled or missed their promise, not yet told so.

    Calendar time is a lower bound for business time, so this only finds shipments the
    planner may now flag; the planner decides with the business calendar. A shipment the
    planner already looked at since its condition became true (its derived state is newer)
    comes back only after ``recheck_after``: one the planner declined (no contact, not yet
    48 business hours, opted out) is not refreshed on every sweep.
    """
    rows = await conn.fetch(
        f"""SELECT s.shipment_id FROM shipments s
           WHERE s.{UNFINISHED}
             AND s.label_created_at > $1::timestamptz - interval '30 days'
             AND ((s.promised_delivery_date IS NOT NULL
                   AND s.promised_delivery_date < ($1::timestamptz AT TIME ZONE 'UTC')::date
                   AND (s.derived_at IS NULL
                        OR s.derived_at < greatest((s.promised_delivery_date + 1)::timestamp
                                                   AT TIME ZONE 'UTC',
                                                   $1::timestamptz - $4::interval))
                   AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.shipment_id = s.shipment_id
                                   AND n.moment = 'missed_promise'))
               OR (coalesce(s.last_event_at, s.label_created_at) < $1::timestamptz - $3::interval
                   AND (s.derived_at IS NULL
                        OR s.derived_at < greatest(coalesce(s.last_event_at, s.label_created_at)
                                                   + $3::interval,
                                                   $1::timestamptz - $4::interval))
                   AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.shipment_id = s.shipment_id
                                   AND n.moment = 'stalled')))
           LIMIT $2""", now, limit, stalled_after, recheck_after)
    return [r["shipment_id"] for r in rows]
