"""Tracker states: what an aggregator says about its own tracker (not the parcel)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from service.integrations import TrackerState


class StoredTrackerState(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    state: str
    detail: str | None
    message: str | None
    stated_at: datetime | None
    updated_at: datetime


# The newest by the sender's own time wins (one without a time replaces only one without).
UPSERT = """
INSERT INTO tracker_states AS t (carrier, tracking_number, source, state, detail, message,
                                 stated_at, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::timestamptz[])
ON CONFLICT (carrier, tracking_number, source) DO UPDATE SET
    state = EXCLUDED.state, detail = EXCLUDED.detail, message = EXCLUDED.message,
    stated_at = EXCLUDED.stated_at, updated_at = EXCLUDED.updated_at
WHERE t.stated_at IS NULL OR EXCLUDED.stated_at >= t.stated_at
"""


async def record(conn: asyncpg.Connection, states: Sequence[TrackerState], now: datetime) -> None:
    """Keep each tracker's latest state (runs in the caller's transaction)."""
    unique = list({(s.carrier, s.tracking_number, s.source): s for s in states}.values())
    if not unique:
        return
    await conn.execute(
        UPSERT, [s.carrier for s in unique], [s.tracking_number for s in unique],
        [s.source for s in unique], [s.state for s in unique], [s.detail for s in unique],
        [s.message for s in unique], [s.stated_at for s in unique], [now] * len(unique))


async def for_tracking(conn: asyncpg.Connection, carrier: str, tracking_number: str
                       ) -> list[StoredTrackerState]:
    rows = await conn.fetch(
        f"""SELECT {", ".join(StoredTrackerState.__struct_fields__)} FROM tracker_states
            WHERE carrier = $1 AND tracking_number = $2 ORDER BY source""",
        carrier, tracking_number)
    return [StoredTrackerState(**r) for r in rows]
