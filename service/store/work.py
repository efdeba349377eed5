"""The work outbox: follow-up work written in the same transaction as its cause.

Lifecycle: `pending` (written with the change) -> `enqueued` (the relay handed it to
arq) -> deleted (the job finished). An `enqueued` item whose job never finished
(Redis lost it, a worker died) goes back to arq after `stale_after`; jobs are idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import asyncpg


class WorkKind(StrEnum):
    """What a work item asks for; each kind has one job (workers.jobs.JOBS)."""

    REFRESH_SHIPMENT = "refresh_shipment"  # subject: a shipment id
    SEND_NOTIFICATION = "send_notification"  # subject: a notification id


REFRESH_SHIPMENT = WorkKind.REFRESH_SHIPMENT
SEND_NOTIFICATION = WorkKind.SEND_NOTIFICATION
CHANNEL = "parcelcast_work"

ADD = """
INSERT INTO work_items (kind, subject_id, run_after, created_at)
SELECT $1, subject_id, $4, $3 FROM unnest($2::text[]) AS subject_id
ON CONFLICT (kind, subject_id) WHERE state = 'pending'
    DO UPDATE SET run_after = least(work_items.run_after, EXCLUDED.run_after)
"""


@dataclass(frozen=True)
class WorkItem:
    id: int
    kind: str
    subject_id: str
    handoffs: int

    def job_id(self, queue_name: str) -> str:
        # A new id per hand-off, so a re-handed stale item is not swallowed by arq's
        # "job id already exists" dedupe while the lost job's result key lingers. arq's job
        # keys are global to the Redis database, so the queue name keeps deployments (and
        # databases whose ids restart) that share a Redis apart.
        return f"{queue_name}:wi:{self.id}:{self.handoffs}"


async def add(
    conn: asyncpg.Connection, kind: str, subject_ids: Sequence[str], now: datetime,
    run_after: datetime | None = None,
) -> None:
    """Queue `kind` for each subject (once while one is still pending) and wake the relay.

    `run_after` (business time) defers the work; a pending item keeps the earlier time.
    """
    if not subject_ids:
        return
    await conn.execute(ADD, kind, list(subject_ids), now, run_after or now)
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


async def claim_due(
    conn: asyncpg.Connection, now: datetime, stale_after: timedelta, limit: int = 500
) -> list[WorkItem]:
    """Lock due items (pending, or enqueued too long ago) for hand-off; call in a transaction.

    `run_after` is business time (the injectable clock); hand-off bookkeeping uses the
    database's real clock, so an accelerated replay does not make every job look stale.
    """
    rows = await conn.fetch(
        """SELECT id, kind, subject_id, handoffs FROM work_items
           WHERE (state = 'pending' AND run_after <= $1)
              OR (state = 'enqueued' AND enqueued_at <= clock_timestamp() - $2::interval)
           ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED""",
        now, stale_after, limit,
    )
    return [WorkItem(r["id"], r["kind"], r["subject_id"], r["handoffs"] + 1) for r in rows]


async def mark_enqueued(conn: asyncpg.Connection, items: Sequence[WorkItem]) -> None:
    await conn.execute(
        """UPDATE work_items w SET state = 'enqueued', enqueued_at = clock_timestamp(),
                                   handoffs = h.handoffs
           FROM unnest($1::bigint[], $2::int[]) AS h(id, handoffs) WHERE w.id = h.id""",
        [i.id for i in items], [i.handoffs for i in items],
    )


async def finish(conn: asyncpg.Connection, item_id: int) -> None:
    await conn.execute("DELETE FROM work_items WHERE id = $1", item_id)


async def depth(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM work_items GROUP BY state")
    counts = {"pending": 0, "enqueued": 0}
    counts.update({r["state"]: r["n"] for r in rows})
    return counts
