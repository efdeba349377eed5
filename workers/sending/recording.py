"""Writes that finish together are written together: accepted sends, and the words of SMS
about to go out.

A send the provider accepted is recorded (sent, work item retired) in one statement; a
worker sending hundreds a second spent a round trip, a pool checkout and a commit on each.
Here the first write starts a statement, and every row that arrives while it is in flight
joins the next one: one statement for however many are waiting, and no send waits for a
timer or for slower sends of its batch (the lease and the uncertainty window stay as short
as before).

A write that fails because the store is unreachable fails every row in it (each send
retries on its own, `send._patiently`); one that fails for another reason is split, each
row written alone, so a row that cannot be written fails alone and the others are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from service.store import notifications as notifications_db
from service.store.notifications import SentRecord, SmsWords
from service.store.transient import is_outage, retrying_contention

Row = TypeVar("Row")


class CoalescedWrites(Generic[Row]):
    """One statement (`statement(conn, rows)`) for the rows of one worker process that wait
    together."""

    def __init__(self, statement: Callable[[Any, Sequence[Row]], Awaitable[None]]) -> None:
        self._statement = statement
        self._waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0  # statements written (for tests and curiosity)

    async def write(self, pool: Any, row: Row) -> None:
        """Returns once `row` is written; raises what writing it raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._writer is None or self._writer.done():
            # Its own task: a send cancelled while waiting does not stop the others' write.
            self._writer = asyncio.create_task(self._write_waiting(pool))
        await future

    async def _write_waiting(self, pool: Any) -> None:
        batch: list[tuple[Row, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_batch(pool, batch)
        finally:
            # Cancelled (the process is stopping): nobody waits for a write that never comes.
            for _, future in batch:
                future.cancel()

    async def _write_batch(self, pool: Any, batch: list[tuple[Row, asyncio.Future[None]]]
                           ) -> None:
        try:
            await self._write(pool, [row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the sends that wait on it
            if len(batch) == 1 or is_outage(exc):
                _settle(batch, exc)
                return
            for one in batch:
                try:
                    await self._write(pool, [one[0]])
                except Exception as alone:  # noqa: BLE001 - as above, its own
                    _settle([one], alone)
                else:
                    _settle([one], None)
        else:
            _settle(batch, None)

    async def _write(self, pool: Any, rows: Sequence[Row]) -> None:
        async def write() -> None:
            async with pool.acquire() as conn:
                await self._statement(conn, rows)

        self.writes += 1
        await retrying_contention(write)


class SentRecorder(CoalescedWrites[SentRecord]):
    """`notifications.record_sent` across the sends of one worker process."""

    def __init__(self) -> None:
        super().__init__(notifications_db.record_sent)

    async def record(self, pool: Any, record: SentRecord) -> None:
        await self.write(pool, record)


class WordsNoter(CoalescedWrites[SmsWords]):
    """`notifications.note_words` across the SMS of one worker process about to go out."""

    def __init__(self) -> None:
        super().__init__(notifications_db.note_words)


def _settle(batch: Sequence[tuple[Any, asyncio.Future[None]]], exc: Exception | None) -> None:
    for _, future in batch:
        if future.done():  # its send was cancelled meanwhile
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)
