"""Carrier vocabulary upkeep: the codes no table maps, and re-deriving stored events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.store import shipments, work
from service.tracking.carrier_codes import Mapped
from service.tracking.taxonomy import status_rank


class UnknownCode(msgspec.Struct, frozen=True, kw_only=True):
    carrier: str
    code: str
    events: int
    first_seen_at: datetime
    last_seen_at: datetime
    sample_description: str | None


async def unknown_codes(conn: asyncpg.Connection, carrier: str | None = None, limit: int = 200
                        ) -> list[UnknownCode]:
    """Codes no table maps, most events first."""
    rows = await conn.fetch(
        f"""SELECT {", ".join(UnknownCode.__struct_fields__)} FROM carrier_unknown_codes
            WHERE $1::text IS NULL OR carrier = $1
            ORDER BY events DESC, carrier, code LIMIT $2""", carrier, limit)
    return [UnknownCode(**r) for r in rows]


# Events after `$1` by id, with what re-deriving needs.
_PAGE = """
SELECT id, carrier, status, substatus, raw_code, payload FROM tracking_events
WHERE id > $1 AND ($3::text IS NULL OR carrier = $3) ORDER BY id LIMIT $2
"""

_FIX = """
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::text[])
        AS t(id, status, status_rank, substatus)
), fixed AS (
    UPDATE tracking_events e
    SET status = i.status, status_rank = i.status_rank, substatus = i.substatus
    FROM input i WHERE e.id = i.id
    RETURNING e.carrier, e.tracking_number
)
SELECT DISTINCT s.shipment_id FROM shipments s
JOIN fixed f ON s.carrier = f.carrier AND s.tracking_number = f.tracking_number
"""


@dataclass
class RemapReport:
    events: int = 0
    changed: int = 0
    shipments: int = 0
    by_change: dict[tuple[str, str], int] | None = None


async def remap(conn: asyncpg.Connection, derive: Callable[[str, str | None, Any], Mapped | None],
                now: datetime, *, carrier: str | None = None, dry_run: bool = False,
                page: int = 5000) -> RemapReport:
    """Give stored events the status `derive` (today's tables) says, page by page, then
    re-derive the affected shipments and queue their refresh (ETAs, messages), as ingest does.
    Each page commits on its own; a second run changes nothing."""
    report = RemapReport(by_change={})
    assert report.by_change is not None
    last = 0
    while True:
        rows = await conn.fetch(_PAGE, last, page, carrier)
        if not rows:
            break
        last = rows[-1]["id"]
        report.events += len(rows)
        ids, statuses, ranks, subs = [], [], [], []
        for r in rows:
            mapped = derive(r["carrier"], r["raw_code"], r["payload"])
            if mapped is None:
                continue
            sub = mapped.substatus or None
            if (mapped.status, sub) == (r["status"], r["substatus"]):
                continue
            ids.append(r["id"])
            statuses.append(mapped.status)
            ranks.append(status_rank(mapped.status))
            subs.append(sub)
            key = (r["status"], mapped.status)
            report.by_change[key] = report.by_change.get(key, 0) + 1
        if not ids or dry_run:
            report.changed += len(ids)
            continue
        async with conn.transaction():
            found = await conn.fetch(_FIX, ids, statuses, ranks, subs)
            shipment_ids = [f["shipment_id"] for f in found]
            if shipment_ids:
                await shipments.rederive_many(conn, shipment_ids, now)
                await work.add(conn, work.REFRESH_SHIPMENT, shipment_ids, now)
        report.changed += len(ids)
        report.shipments += len(shipment_ids)
    if not dry_run:
        await forget_mapped(conn, derive)
    return report


async def forget_mapped(conn: asyncpg.Connection,
                        derive: Callable[[str, str | None, Any], Mapped | None]) -> int:
    """Drop counted unknown codes that a table maps now (their events were just remapped)."""
    rows = await conn.fetch("SELECT carrier, code FROM carrier_unknown_codes")
    mapped = [(r["carrier"], r["code"]) for r in rows
              if (m := derive(r["carrier"], r["code"], {"status": r["code"]})) is not None
              and m.status != "unknown"]
    if mapped:
        await conn.execute(
            """DELETE FROM carrier_unknown_codes
               WHERE (carrier, code) IN (SELECT * FROM unnest($1::text[], $2::text[]))""",
            [c for c, _ in mapped], [k for _, k in mapped])
    return len(mapped)
