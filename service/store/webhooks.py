"""Webhook deliveries (the raw bodies, for dedupe and re-processing), carrier estimates, and
the corrections re-processing makes to the events a sender produced."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.integrations import CarrierEstimate
from service.store import shipments, work
from service.store.events import EventRow

# A new delivery, or a retry of one we rejected (the mapping may accept it now): RETURNING
# gives its id. A delivery already processed or ignored returns nothing: a duplicate. Run
# inside the transaction that writes the delivery's effects, so a concurrent copy waits on
# the unique key and then sees a duplicate, and a failure leaves no claim behind.
CLAIM = """
INSERT INTO webhook_deliveries (source, delivery_id, topic, source_event_id, headers, body,
                                received_at, outcome)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'processed')
ON CONFLICT (source, delivery_id) DO UPDATE SET
    topic = EXCLUDED.topic, source_event_id = EXCLUDED.source_event_id,
    headers = EXCLUDED.headers, body = EXCLUDED.body, received_at = EXCLUDED.received_at,
    outcome = EXCLUDED.outcome, detail = NULL, attempts = webhook_deliveries.attempts + 1
WHERE webhook_deliveries.outcome = 'rejected'
RETURNING id
"""

REJECT = """
INSERT INTO webhook_deliveries (source, delivery_id, topic, source_event_id, headers, body,
                                received_at, outcome, detail, processed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'rejected', $8, $7)
ON CONFLICT (source, delivery_id) DO UPDATE SET
    body = EXCLUDED.body, headers = EXCLUDED.headers, received_at = EXCLUDED.received_at,
    detail = EXCLUDED.detail, processed_at = EXCLUDED.processed_at,
    attempts = webhook_deliveries.attempts + 1
WHERE webhook_deliveries.outcome = 'rejected'
"""

# Newest estimate by the sender's own time wins; one without a time replaces only one
# without a time, so a replayed old tracker cannot move the date back. The winner is kept per
# tracking number whether or not the shipment exists yet (a tracker often comes first: the
# shipment takes it when it arrives, ADOPT_ESTIMATES), and set on the shipment if it does.
SET_ESTIMATE = f"""
WITH kept AS (
    INSERT INTO carrier_estimates (carrier, tracking_number, delivery_date, source, as_of,
                                   received_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (carrier, tracking_number) DO UPDATE SET
        delivery_date = EXCLUDED.delivery_date, source = EXCLUDED.source,
        as_of = EXCLUDED.as_of, received_at = EXCLUDED.received_at
    WHERE carrier_estimates.as_of IS NULL OR EXCLUDED.as_of >= carrier_estimates.as_of
    RETURNING 1
), moved AS (
    UPDATE shipments SET carrier_estimated_delivery = $3, carrier_estimate_source = $4,
                         carrier_estimate_as_of = $5, updated_at = $6,
                         {shipments.bump_revision("shipments")}
    WHERE carrier = $1 AND tracking_number = $2
      AND (carrier_estimate_as_of IS NULL OR $5::timestamptz >= carrier_estimate_as_of)
      AND (carrier_estimated_delivery, carrier_estimate_source)
          IS DISTINCT FROM ($3::date, $4::text)
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved) AS changed,
       EXISTS (SELECT 1 FROM shipments WHERE carrier = $1 AND tracking_number = $2) AS known
"""


@dataclass(frozen=True)
class EstimatesKept:
    """What storing a batch's carrier estimates did."""

    changed: int  # shipments whose estimate moved
    before_shipment: list[str]  # carriers of estimates kept for a shipment not yet known


class StoredDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook delivery as kept: the raw body and what became of it."""

    id: int
    source: str
    delivery_id: str
    topic: str | None
    source_event_id: str | None
    body: bytes
    received_at: datetime
    outcome: str


def body_delivery_id(body: bytes) -> str:
    """For senders without a delivery id header: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


async def claim(
    conn: asyncpg.Connection, source: str, delivery_id: str, body: bytes, headers: dict[str, str],
    received_at: datetime, topic: str | None = None, source_event_id: str | None = None,
) -> int | None:
    """Record the delivery; its id, or None when it was already processed (a duplicate)."""
    delivery: int | None = await conn.fetchval(
        CLAIM, source, delivery_id, topic, source_event_id, headers, body, received_at)
    return delivery


async def finish(conn: asyncpg.Connection, delivery: int, outcome: str, detail: dict[str, Any],
                 now: datetime) -> None:
    await conn.execute(
        "UPDATE webhook_deliveries SET outcome = $2, detail = $3, processed_at = $4 WHERE id = $1",
        delivery, outcome, detail, now)


async def reject(
    conn: asyncpg.Connection, source: str, delivery_id: str, body: bytes, headers: dict[str, str],
    received_at: datetime, errors: list[dict[str, str]], topic: str | None = None,
    source_event_id: str | None = None,
) -> None:
    """Keep a delivery we could not map, with why; a later retry is processed afresh."""
    await conn.execute(REJECT, source, delivery_id, topic, source_event_id, headers, body,
                       received_at, {"errors": errors})


async def set_estimates(conn: asyncpg.Connection, estimates: Sequence[CarrierEstimate],
                        now: datetime) -> EstimatesKept:
    """Keep carrier estimates (newest by the sender's time) and set them on their shipments."""
    changed, before = 0, []
    for e in estimates:
        row = await conn.fetchrow(SET_ESTIMATE, e.carrier, e.tracking_number, e.delivery_date,
                                  e.source, e.as_of, now)
        changed += int(row["changed"])
        if not row["known"]:
            before.append(e.carrier)
    return EstimatesKept(changed, before)


async def origin(conn: asyncpg.Connection, carrier: str, tracking_number: str
                 ) -> tuple[str | None, str | None] | None:
    """(postal code, country) a shipment leaves from, or None when we do not know it yet."""
    row = await conn.fetchrow(
        "SELECT origin_postal_code, origin_country FROM shipments "
        "WHERE carrier = $1 AND tracking_number = $2", carrier, tracking_number)
    return (row["origin_postal_code"], row["origin_country"]) if row else None


async def fulfillment_shipments(conn: asyncpg.Connection, fulfillment_id: int
                                ) -> list[tuple[str, str]]:
    """(carrier, tracking number) of each stored shipment of a Shopify fulfilment (named
    "shopify-<id>", and "shopify-<id>-<n>" for its further tracking numbers)."""
    rows = await conn.fetch(
        "SELECT carrier, tracking_number FROM shipments WHERE shipment_id = $1 "
        "OR shipment_id LIKE $1 || '-%' ORDER BY shipment_id", f"shopify-{fulfillment_id}")
    return [(r["carrier"], r["tracking_number"]) for r in rows]


# Re-processing: the events a delivery produced get the normalized status the current code
# maps give. Only events stored from the same sender (payload source) are touched, and only
# the status, its rank and the raw code: these follow from the fields that identify the
# event (its dedupe key), so every delivery carrying the scan agrees and a second run
# changes nothing. Times, locations and descriptions stay as first stored.
CORRECT_EVENTS = """
WITH input AS (
    SELECT * FROM unnest($1::bytea[], $2::text[], $3::smallint[], $4::text[], $6::text[])
        AS t(dedupe_key, status, status_rank, raw_code, substatus)
), fixed AS (
    UPDATE tracking_events e
    SET status = i.status, status_rank = i.status_rank, raw_code = i.raw_code,
        substatus = i.substatus
    FROM input i JOIN tracking_event_keys k ON k.dedupe_key = i.dedupe_key
    WHERE e.id = k.event_id AND e.received_at = k.received_at AND e.payload->>'source' = $5
      AND (e.status, e.status_rank, e.raw_code, e.substatus) IS DISTINCT FROM
          (i.status, i.status_rank, i.raw_code, i.substatus)
    RETURNING e.carrier, e.tracking_number
)
SELECT (SELECT count(*) FROM fixed) AS corrected,
       ARRAY(SELECT DISTINCT s.shipment_id FROM shipments s
             JOIN fixed f ON s.carrier = f.carrier AND s.tracking_number = f.tracking_number)
           AS shipment_ids
"""


async def correct_events(conn: asyncpg.Connection, rows: Sequence[EventRow], source: str,
                         now: datetime) -> int:
    """Set stored events of `source` to the status `rows` give them; how many changed.

    Their shipments' status is derived again and their refresh queued.
    """
    unique = list({r.dedupe_key: r for r in reversed(rows)}.values())
    if not unique:
        return 0
    record = await conn.fetchrow(
        CORRECT_EVENTS, [r.dedupe_key for r in unique], [r.status for r in unique],
        [r.status_rank for r in unique], [r.raw_code for r in unique], source,
        [r.substatus for r in unique])
    shipment_ids = list(record["shipment_ids"])
    if shipment_ids:
        await shipments.rederive_many(conn, shipment_ids, now)
        await work.add(conn, work.REFRESH_SHIPMENT, shipment_ids, now)
    return int(record["corrected"])


async def stored_ids(conn: asyncpg.Connection, source: str | None = None,
                     since: datetime | None = None, delivery: int | None = None) -> list[int]:
    """Stored deliveries (any outcome) in the order they were first stored."""
    rows = await conn.fetch(
        """SELECT id FROM webhook_deliveries
           WHERE ($1::text IS NULL OR source = $1) AND ($2::timestamptz IS NULL OR received_at >= $2)
             AND ($3::bigint IS NULL OR id = $3)
           ORDER BY id""", source, since, delivery)
    return [r["id"] for r in rows]


async def lock(conn: asyncpg.Connection, delivery: int) -> StoredDelivery | None:
    """One stored delivery, locked for the caller's transaction (a resend of it waits)."""
    row = await conn.fetchrow(
        f"""SELECT {", ".join(StoredDelivery.__struct_fields__)}
            FROM webhook_deliveries WHERE id = $1 FOR UPDATE""", delivery)
    return StoredDelivery(**row) if row else None


async def note_errors(conn: asyncpg.Connection, delivery: int, errors: list[dict[str, str]],
                      now: datetime) -> None:
    """A rejected delivery that still fails keeps the latest reason."""
    await conn.execute(
        "UPDATE webhook_deliveries SET detail = $2, processed_at = $3 "
        "WHERE id = $1 AND outcome = 'rejected'", delivery, {"errors": errors}, now)
