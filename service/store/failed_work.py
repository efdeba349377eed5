"""Quarantined work: a row that failed on its own after its batch was split.

Its work item is retired and a new one waits until `retry_at` (doubling from a minute,
capped at six hours, business time), so a row that keeps failing is tried a few times a
day, never in a loop; a change to its subject (a PUT) queues work at once as usual. The
record goes when the work succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from service.store import work

RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class FailedWork:
    id: int
    kind: str
    subject_id: str
    attempts: int
    error: str
    detail: str
    first_failed_at: datetime
    last_failed_at: datetime
    retry_at: datetime


COLUMNS = ("id, kind, subject_id, attempts, error, detail, first_failed_at, last_failed_at, "
           "retry_at")

# attempts n waits RETRY_FIRST * 2^(n-1), capped (the exponent too, so the interval
# arithmetic cannot overflow).
RECORD = f"""
WITH done AS (DELETE FROM work_items WHERE id = $7)
INSERT INTO failed_work AS f (kind, subject_id, attempts, error, detail, first_failed_at,
                              last_failed_at, retry_at)
VALUES ($1, $2, 1, $3, $4, $5::timestamptz, $5::timestamptz, $5::timestamptz + $6::interval)
ON CONFLICT (kind, subject_id) DO UPDATE SET
    attempts = f.attempts + 1, error = EXCLUDED.error, detail = EXCLUDED.detail,
    last_failed_at = EXCLUDED.last_failed_at,
    retry_at = EXCLUDED.last_failed_at
               + least($8::interval, $6::interval * power(2, least(f.attempts, 20)))
RETURNING {COLUMNS}
"""


async def record(conn: asyncpg.Connection, kind: str, work_item_id: int, subject_id: str,
                 error: str, detail: str, now: datetime) -> FailedWork:
    """Quarantine one piece of work: record the failure, retire its work item and queue the
    retry at the backoff's time (call in a transaction)."""
    row = await conn.fetchrow(RECORD, kind, subject_id, error, detail, now, RETRY_FIRST,
                              work_item_id, RETRY_MAX)
    failed = FailedWork(**dict(row))
    await work.add(conn, kind, [subject_id], now, run_after=failed.retry_at)
    return failed


async def resolve(conn: asyncpg.Connection, kind: str, subject_ids: Sequence[str]) -> None:
    """The work on these subjects succeeded: they are no longer failing."""
    if subject_ids:
        await conn.execute(
            "DELETE FROM failed_work WHERE kind = $1 AND subject_id = ANY($2::text[])",
            kind, list(subject_ids))


async def list_failing(conn: asyncpg.Connection, limit: int = 100) -> list[FailedWork]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM failed_work ORDER BY last_failed_at DESC, id DESC LIMIT $1",
        limit)
    return [FailedWork(**dict(r)) for r in rows]


async def retry_now(conn: asyncpg.Connection, failed_id: int, now: datetime) -> bool:
    """Queue a quarantined piece of work for now; False if there is no such record."""
    row = await conn.fetchrow(
        "UPDATE failed_work SET retry_at = $2 WHERE id = $1 RETURNING kind, subject_id",
        failed_id, now)
    if row is None:
        return False
    await work.add(conn, row["kind"], [row["subject_id"]], now)
    return True
