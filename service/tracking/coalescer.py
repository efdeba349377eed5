"""Merging concurrent small ingests into one statement (group commit for tracking events).

Under load, single-event requests arrive by the hundred per second, and each would pay
for its own statement and commit. Submissions that arrive while earlier flushes are in
flight wait and go together in the next one; with no load a submission is flushed at
once, so this adds no latency when idle. Every request still gets its answer only after
its rows are committed.

Merging is for speed, not for a shared fate: when a merged statement fails for its data's
sake (not because the database is unavailable), each request's rows are stored again on
their own, in arrival order, so one request's bad input is that request's error only (a
value PostgreSQL refuses to store becomes its 422).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.clock import Clock
from service.errors import FieldError, validation_failed
from service.store import events as events_db
from service.store.events import EventRow, IngestResult
from service.store.transient import is_transient

log = logging.getLogger(__name__)


@dataclass
class _Submission:
    rows: Sequence[EventRow]
    done: asyncio.Future[IngestResult]


class IngestCoalescer:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, max_rows: int = 1000,
                 max_inflight: int = 2) -> None:
        self.pool = pool
        self.clock = clock
        self.max_rows = max_rows
        self.max_inflight = max_inflight
        self._waiting: list[_Submission] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.fallbacks = 0  # merged flushes that failed and were stored request by request

    async def ingest(self, rows: Sequence[EventRow]) -> IngestResult:
        """Store `rows` (with whatever else is waiting); which of their dedupe keys were new
        (`shipments_touched` counts the whole flush's)."""
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Submission(rows, done))
        self._start_flushes()
        return await done

    def _start_flushes(self) -> None:
        while self._waiting and self._inflight < self.max_inflight:
            batch: list[_Submission] = []
            count = 0
            while self._waiting and (not batch or count + len(self._waiting[0].rows) <= self.max_rows):
                submission = self._waiting.pop(0)
                batch.append(submission)
                count += len(submission.rows)
            self._inflight += 1
            task = asyncio.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            try:
                answers = await self._merged(batch)
            except Exception as exc:
                if len(batch) == 1 or is_transient(exc):
                    raise
                log.warning("a merged ingest of %d requests failed (%s: %s); storing each "
                            "request on its own", len(batch), type(exc).__name__, exc)
                self.fallbacks += 1
                await self._each(batch)
            else:
                for submission, keys in zip(batch, answers, strict=True):
                    if not submission.done.done():
                        submission.done.set_result(keys)
        except BaseException as exc:
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(_answer(exc, len(batch) == 1))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight -= 1
            self._start_flushes()

    async def _merged(self, batch: list[_Submission]) -> list[IngestResult]:
        """One statement for the whole batch; the keys that were new, per submission."""
        # A key sent by two requests in one flush is new for the first of them only.
        owner: dict[bytes, int] = {}
        rows: list[EventRow] = []
        for number, submission in enumerate(batch):
            for row in submission.rows:
                if row.dedupe_key not in owner:
                    owner[row.dedupe_key] = number
                    rows.append(row)
        async with self.pool.acquire() as conn:
            result = await events_db.ingest(conn, rows, self.clock.now())
        mine = [IngestResult(set(), result.shipments_touched) for _ in batch]
        for key in result.accepted_keys:
            mine[owner[key]].accepted_keys.add(key)
        for key in result.after_delivery:
            mine[owner[key]].after_delivery.add(key)
        return mine

    async def _each(self, batch: list[_Submission]) -> None:
        """Each submission in its own statement, in arrival order (so a key two of them sent
        is new for the first, as in a merged flush), each answered with its own outcome."""
        async with self.pool.acquire() as conn:
            for submission in batch:
                try:
                    result = await events_db.ingest(conn, submission.rows, self.clock.now())
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    if not submission.done.done():
                        submission.done.set_exception(_answer(exc, True))
                else:
                    if not submission.done.done():
                        submission.done.set_result(result)


def _answer(exc: BaseException, alone: bool) -> BaseException:
    """What a request is told when the statement holding its rows failed: a value PostgreSQL
    refuses to store, in a statement with no other request's rows, is the request's 422."""
    # PostgreSQL's data exceptions (class 22), and asyncpg's own for an argument it cannot
    # encode (an InterfaceError that is also a ValueError).
    refused = isinstance(exc, asyncpg.DataError) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError))
    if alone and refused:
        return validation_failed([FieldError(
            "events", f"cannot be stored: {exc}", "unstorable")])
    return exc
