"""Merging concurrent small ingests into one statement (group commit for tracking events).

Under load, single-event requests arrive by the hundred per second, and each would pay
for its own statement and commit. Submissions that arrive while earlier flushes are in
flight wait and go together in the next one; with no load a submission is flushed at
once, so this adds no latency when idle. Every request still gets its answer only after
its rows are committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.clock import Clock
from service.store import events as events_db
from service.store.events import EventRow


@dataclass
class _Submission:
    rows: Sequence[EventRow]
    done: asyncio.Future[set[bytes]]


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

    async def ingest(self, rows: Sequence[EventRow]) -> set[bytes]:
        """Store `rows` (with whatever else is waiting); the dedupe keys that were new."""
        done: asyncio.Future[set[bytes]] = asyncio.get_running_loop().create_future()
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
        # A key sent by two requests in one flush is new for the first of them only.
        owner: dict[bytes, int] = {}
        rows: list[EventRow] = []
        for number, submission in enumerate(batch):
            for row in submission.rows:
                if row.dedupe_key not in owner:
                    owner[row.dedupe_key] = number
                    rows.append(row)
        try:
            async with self.pool.acquire() as conn:
                result = await events_db.ingest(conn, rows, self.clock.now())
        except BaseException as exc:
            for submission in batch:
                if not submission.done.done():
                    submission.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            mine: list[set[bytes]] = [set() for _ in batch]
            for key in result.accepted_keys:
                mine[owner[key]].add(key)
            for submission, keys in zip(batch, mine, strict=True):
                if not submission.done.done():
                    submission.done.set_result(keys)
        finally:
            self._inflight -= 1
            self._start_flushes()
