"""Batches share speed, not fate.

A batch job that fails for its data's sake is split in halves, and halves again, until
the items that fail alone are found; only those are quarantined (service.store.failed_work:
the error is recorded, the item is tried again later with backoff) and every other item
gets its work done. A store that is unavailable or busy (service.store.transient) is never
blamed on an item: that failure goes up, and the whole job is tried again later.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence

from service.store import failed_work
from service.store.transient import is_transient
from workers.context import WorkerContext

log = logging.getLogger(__name__)

Item = tuple[int, str]  # (work item id, subject id), as the relay hands them over


async def bisect(items: Sequence[Item], run: Callable[[Sequence[Item]], Awaitable[None]],
                 poisoned: Callable[[Item, Exception], Awaitable[None]]) -> list[Item]:
    """`run(items)`; if it fails, each half the same way, down to single items, and each single
    item that still fails goes to `poisoned`. The items whose run succeeded, in order."""
    try:
        await run(items)
        return list(items)
    except Exception as exc:
        if is_transient(exc):
            raise
        if len(items) == 1:
            await poisoned(items[0], exc)
            return []
    middle = len(items) // 2
    return [*await bisect(items[:middle], run, poisoned),
            *await bisect(items[middle:], run, poisoned)]


async def quarantine(app: WorkerContext, kind: str, item: Item, exc: Exception) -> None:
    """Take one item out of circulation until its retry time, with the error on record."""
    work_item_id, subject_id = item
    error = f"{type(exc).__name__}: {exc}"[:2000]
    detail = "".join(traceback.format_exception(exc))[-20000:]
    async with app.pool.acquire() as conn, conn.transaction():
        failed = await failed_work.record(conn, kind, work_item_id, subject_id, error, detail,
                                          app.clock.now())
    log.error("%s %s quarantined (attempt %d, next at %s): %s", kind, subject_id,
              failed.attempts, failed.retry_at.isoformat(), error, exc_info=exc)
    if app.metrics is not None:
        app.metrics.quarantined.labels(kind).inc()
