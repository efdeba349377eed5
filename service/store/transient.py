"""Which failures are the stores' and pass by themselves, and which are the data's.

The line between backing off and quarantining: an *outage* (the database or Redis is
unreachable, restarting, or the connection broke) says nothing about the rows being worked
on, so the whole piece of work is tried again later on a fresh connection; *contention*
(a deadlock, a serialization failure) is tried again at once. Anything else may be the
data's fault, and only then is a batch split to find the row that causes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # a connect or a call that never answered
    asyncpg.PostgresConnectionError,  # class 08, incl. "connection was closed in the middle"
    asyncpg.CannotConnectNowError,  # "the database system is starting up / shutting down"
    asyncpg.AdminShutdownError,  # pg_ctl stop / restart
    asyncpg.CrashShutdownError,
    asyncpg.IdleSessionTimeoutError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,  # a connection left in a broken protocol state
    RedisConnectionError,  # incl. BusyLoadingError (Redis restarting)
    RedisTimeoutError,
)
_CONTENTION: tuple[type[BaseException], ...] = (asyncpg.TransactionRollbackError,)


def is_outage(exc: BaseException) -> bool:
    """The store is unreachable or the connection broke: reconnect and try it all again."""
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing"; but not asyncpg's DataError (an
        # argument that cannot be encoded), which is also a ValueError and is the data's.
        return not isinstance(exc, ValueError)
    return isinstance(exc, _OUTAGES)


def is_contention(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the same work, run again, goes through."""
    return isinstance(exc, _CONTENTION)


def is_transient(exc: BaseException) -> bool:
    """Not the data's fault: never quarantine a row for it."""
    return is_outage(exc) or is_contention(exc)


CONTENTION_RETRIES = 3


async def retrying_contention(run: Callable[[], Awaitable[T]],
                              attempts: int = CONTENTION_RETRIES) -> T:
    """`run()`, again when it lost a deadlock (or a serialization conflict); it must be one
    atomic statement or transaction, so running it again is safe."""
    for attempt in range(attempts):
        try:
            return await run()
        except asyncpg.TransactionRollbackError:
            if attempt == attempts - 1:
                raise
    raise RuntimeError("unreachable")
