"""The work outbox: follow-up work written in the same transaction as its cause.

Lifecycle: `pending` (written with the change; one per kind and subject, so ten scans of a
shipment while its refresh waits make one refresh) -> `enqueued` (the relay handed it to arq
in job `job_id`) -> leased (a job took it: `leased_by`, `leased_until`, renewed while the job
works) -> deleted (the job finished). Done rows are deleted, never kept, so the table stays
as small as the work in flight.

An `enqueued` item goes back to arq only when its job is really gone: its lease ran out (the
worker died or gave up), or, never leased, arq has no such job any more (Redis lost it) once
the item has waited `stale_after`. An item still queued in arq is left alone however long it
waits, so a deep queue is never handed over twice. Jobs are idempotent all the same.
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
    conn: asyncpg.Connection, now: datetime, limit: int = 500
) -> list[WorkItem]:
    """Lock due pending items for hand-off; call in a transaction.

    Reads only due rows, through the partial index `work_items_pending_due`. `run_after` is
    business time (the injectable clock).
    """
    rows = await conn.fetch(
        """SELECT id, kind, subject_id, handoffs FROM work_items
           WHERE state = 'pending' AND run_after <= $1
           ORDER BY run_after, id LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now, limit,
    )
    return [WorkItem(r["id"], r["kind"], r["subject_id"], r["handoffs"] + 1) for r in rows]


@dataclass(frozen=True)
class Unfinished:
    """A handed-over item waiting longer than `stale_after` with no live lease."""

    item: WorkItem
    job_id: str | None
    lease_expired: bool  # a job took it and stopped renewing: its worker is gone


async def claim_unfinished(
    conn: asyncpg.Connection, stale_after: timedelta, limit: int = 500
) -> list[Unfinished]:
    """Lock handed-over items that may have lost their job; call in a transaction. The caller
    asks arq about the never-leased ones, hands over the gone ones (`mark_enqueued`) and
    marks the rest `still_queued`. Hand-off bookkeeping uses the database's real clock, so an
    accelerated replay does not make every job look lost."""
    rows = await conn.fetch(
        """SELECT id, kind, subject_id, handoffs, job_id, leased_until IS NOT NULL AS leased
           FROM work_items
           WHERE state = 'enqueued' AND enqueued_at <= clock_timestamp() - $1::interval
             AND (leased_until IS NULL OR leased_until < clock_timestamp())
           ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        stale_after, limit,
    )
    return [Unfinished(WorkItem(r["id"], r["kind"], r["subject_id"], r["handoffs"] + 1),
                       r["job_id"], r["leased"]) for r in rows]


async def still_queued(conn: asyncpg.Connection, item_ids: Sequence[int]) -> None:
    """arq still has their jobs: look again after another `stale_after`."""
    if item_ids:
        await conn.execute(
            "UPDATE work_items SET enqueued_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
            list(item_ids))


async def mark_enqueued(conn: asyncpg.Connection, items: Sequence[WorkItem],
                        job_ids: Sequence[str]) -> None:
    """`items` went to arq, item i in job `job_ids[i]` (any lease is over)."""
    await conn.execute(
        """UPDATE work_items w SET state = 'enqueued', enqueued_at = clock_timestamp(),
                                   handoffs = h.handoffs, job_id = h.job_id,
                                   leased_by = NULL, leased_until = NULL
           FROM unnest($1::bigint[], $2::int[], $3::text[]) AS h(id, handoffs, job_id)
           WHERE w.id = h.id""",
        [i.id for i in items], [i.handoffs for i in items], list(job_ids),
    )


async def lease(conn: asyncpg.Connection, item_ids: Sequence[int], job_id: str,
                lease_s: float) -> set[int]:
    """Take the items for job `job_id` for `lease_s` seconds: those handed over and not
    leased by a live other job (a copy of a job that was handed over again, or already done,
    gets nothing). The ids taken.

    A job can start before the relay's hand-off commits: the row's state as of this
    statement's snapshot is still `pending`, so `state` is not a condition (the row would be
    skipped without waiting); the lock waits for that commit, and the SET and RETURNING
    expressions are computed on the committed row. An item still `pending` once that is
    settled (the relay died before its hand-off committed) is not taken: the relay hands it
    over again, so a change merged into it meanwhile (one pending item per subject) is not
    retired with a job that started before it."""
    rows = await conn.fetch(
        """UPDATE work_items SET
                  leased_by = CASE WHEN state = 'enqueued' THEN $2 ELSE leased_by END,
                  leased_until = CASE WHEN state = 'enqueued'
                                      THEN clock_timestamp() + make_interval(secs => $3)
                                      ELSE leased_until END
           WHERE id = ANY($1::bigint[])
             AND (leased_by IS NULL OR leased_by = $2 OR leased_until < clock_timestamp())
           RETURNING id, state = 'enqueued' AS taken""",
        sorted(item_ids), job_id, lease_s)
    return {r["id"] for r in rows if r["taken"]}


async def renew(conn: asyncpg.Connection, item_ids: Sequence[int], job_id: str,
                lease_s: float) -> None:
    await conn.execute(
        """UPDATE work_items SET leased_until = clock_timestamp() + make_interval(secs => $3)
           WHERE id = ANY($1::bigint[]) AND leased_by = $2""",
        sorted(item_ids), job_id, lease_s)


async def finish(conn: asyncpg.Connection, item_id: int) -> None:
    await conn.execute("DELETE FROM work_items WHERE id = $1", item_id)


async def depth(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM work_items GROUP BY state")
    counts = {"pending": 0, "enqueued": 0}
    counts.update({r["state"]: r["n"] for r in rows})
    return counts

