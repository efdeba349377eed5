"""Keeping a long-running process's memory flat (glibc's malloc; elsewhere these do nothing).

Measured on the refresh path (6 concurrent batches of 50 through ``EtaRuntime.refresh_many``,
its feature building and XGBoost in threads, 4 rounds after training in the process):

=====================  ===============  =================
malloc setting          RSS after round 0  after round 3
=====================  ===============  =================
default                 +112 MB           +129 MB, growing
2 arenas                +44 MB            +46 MB
trim after work         +19 MB            +19 MB
2 arenas + trim         -69 MB            -47 MB
=====================  ===============  =================

glibc gives every thread that allocates its own arena (up to 8 per core) and returns freed
memory to the system only from the top of the main heap: the feature frames and XGBoost's
buffers built in ``asyncio.to_thread`` stay as resident memory in idle arenas. So a worker
and the API limit malloc to two arenas at start (:func:`limit_arenas`, before any thread
exists) and hand freed memory back every half minute (:func:`give_back_forever`); the
allocator calls themselves are predictor/memory.py's, which training uses between phases.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import tracemalloc
from collections.abc import Callable

from predictor import memory

log = logging.getLogger(__name__)

ARENAS = 2
GIVE_BACK_EVERY_S = 30.0
# Allocations (minus frees) between young-generation collections (CPython's default: 700).
YOUNG_COLLECTION_EVERY = 20_000


def without_pyarrow() -> bool:
    """Pandas in this process as a core install runs it: ``str`` columns stored as Python
    strings, pyarrow never loaded (False, and nothing changed, once pandas is imported).

    pyarrow is only in the ``dask`` and ``dev`` extras, but pandas loads it whenever it is
    installed: measured at start (imports and the ZIP tables), a worker takes 258 MB with
    it and 215 MB without, mostly the pages of Arrow's shared libraries. The serving
    processes never ask Arrow for anything; training in a process of its own (spawned:
    it does not inherit this) and ``parcelcast train --dask-scheduler`` still load it."""
    if "pandas" in sys.modules:
        return False
    sys.modules.setdefault("pyarrow", None)  # type: ignore[arg-type]  # import raises ImportError
    return True


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for the whole process (call before threads start)."""
    return memory.limit_arenas(arenas)


async def give_back_forever(beat: Callable[[], None] = lambda: None,
                            every_s: float = GIVE_BACK_EVERY_S) -> None:
    """Every `every_s` seconds, in a thread (trimming a large heap takes milliseconds)."""
    while True:
        await asyncio.sleep(every_s)
        await asyncio.to_thread(memory.give_back)
        beat()


def settle_collector(young_every: int = YOUNG_COLLECTION_EVERY) -> None:
    """Once start-up is done: what exists now (modules, the pool, the model) is kept out of
    every later collection (`gc.freeze`), and the young generation is collected less often.

    Measured on the API under the ingest benchmark (60 batches of 1,000 events, CPython's
    defaults): 0.87 s in the cycle collector, 15 ms per batch; four full collections of the
    ~180k start-up objects took 0.49 s of it, and a 1,000-event batch allocates enough for
    two young collections that each walk the other requests' live rows. The objects frozen
    here live as long as the process anyway; garbage in cycles is still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_every, middle, old)
    memory.give_back()  # what building the start-up tables freed (service.zones.warm)



async def watch_allocations_forever(beat: Callable[[], None], every_s: float,
                                    top: int = 15, frames: int = 8) -> None:
    """A diagnostic, off unless PARCELCAST_MEMORY_DIAGNOSTIC_S is set (docs/operations.md):
    traces Python's allocations from now on (tracemalloc: slower allocations, and memory for
    the traces) and every `every_s` seconds logs the `top` call chains whose memory still
    held grew most since the last dump (innermost frame first)."""
    tracemalloc.start(frames)
    try:
        before = tracemalloc.take_snapshot()
        while True:
            beat()
            await asyncio.sleep(every_s)
            # A snapshot of a busy process takes a second or more of CPU: in a thread, the
            # event loop keeps running between its turns.
            before, report = await asyncio.to_thread(_allocation_report, before, top)
            log.warning("%s", report)
    finally:
        tracemalloc.stop()


def _allocation_report(before: tracemalloc.Snapshot, top: int
                       ) -> tuple[tracemalloc.Snapshot, str]:
    gc.collect()  # garbage in cycles is not memory held
    now = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    grown = [s for s in now.compare_to(before, "traceback") if s.size_diff > 0][:top]
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"{s.size_diff / 1e3:+.0f} kB in {s.count_diff:+d} blocks: " + " < ".join(
        f"{_short(f.filename)}:{f.lineno}" for f in reversed(s.traceback)) for s in grown]
    return now, (f"allocations traced: {traced / 1e6:.1f} MB (peak {peak / 1e6:.1f} MB); "
                 "grown most since the last dump:\n  " + "\n  ".join(lines))


def _short(filename: str) -> str:
    """site-packages/x/y.py -> x/y.py; elsewhere the file and its folder."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return "/".join(filename.rsplit("/", 2)[-2:])
