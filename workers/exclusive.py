"""Background work that one worker at a time does (a session advisory lock per kind of work),
and the "when the champion's newest result is older than a period" rule two of them share
(the recalibration's aligned on the clock's period boundaries: as of each UTC day's start)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import asyncpg

from service.clock import Clock
from service.store import eta_models
from service.store.locks import session_lock

T = TypeVar("T")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Dated(Protocol):
    @property
    def as_of(self) -> datetime: ...


@asynccontextmanager
async def one_worker(pool: asyncpg.Pool, key: int) -> AsyncIterator[asyncpg.Connection | None]:
    """A connection holding advisory lock `key` for the block, or None when another worker
    holds it (then the work is theirs)."""
    async with pool.acquire() as conn, session_lock(conn, key) as held:
        yield conn if held else None


def period_start(now: datetime, every: timedelta) -> datetime:
    """The start of the clock period of length `every` that `now` falls in, periods counted
    from the Unix epoch (for a day: midnight UTC)."""
    return EPOCH + (now - EPOCH) // every * every


async def when_champion_due(
        pool: asyncpg.Pool, clock: Clock, key: int, every: timedelta,
        latest: Callable[[asyncpg.Connection, str], Awaitable[Dated | None]],
        act: Callable[[asyncpg.Connection, datetime], Awaitable[T | None]], *,
        aligned: bool = False) -> T | None:
    """One worker at a time: `act` when there is a champion and its newest `latest` result
    is older than `every` of clock time (or missing); else None.

    `aligned`: due instead once the clock has passed the start of a period (`period_start`)
    that the newest result predates, and `act` runs as of that start: however late the
    check comes (a poll, a busy worker, a clock running thousands of times faster than real
    time), the results stay one per period and as of its start, never drifting later."""
    async with one_worker(pool, key) as conn:
        if conn is None:
            return None
        now = clock.now()
        version = await eta_models.champion_version(conn)
        if version is None:
            return None
        newest = await latest(conn, version)
        if aligned:
            start = period_start(now, every)
            if newest is not None and newest.as_of >= start:
                return None
            return await act(conn, start)
        if newest is not None and now - newest.as_of < every:
            return None
        return await act(conn, now)
