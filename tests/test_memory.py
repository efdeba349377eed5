"""Freed memory goes back to the system (service/memory.py), measured in a process of its own;
the tables every serving process keeps are built at its start (service.zones.warm)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import tracemalloc
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from predictor.lanes import zip_table
from predictor.memory import _libc
from service.api.app import create_app
from service.clock import ManualClock
from service.memory import watch_allocations_forever
from service.settings import Settings
from service.store.embedded import free_port
from workers.main import run_worker

PROGRAM = """
import json, threading
from predictor.memory import give_back
from service.memory import limit_arenas
limited = limit_arenas()

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

pinned = []

def churn():  # what a refresh batch does in a thread: many mid-sized buffers, then freed,
    batch = [bytes(2000) for _ in range(40_000)]  # but for a few that live on
    pinned.extend(batch[::200])
    del batch

start = rss_mb()
threads = [threading.Thread(target=churn) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
before = rss_mb()
returned = give_back()
after = rss_mb()
print(json.dumps({"limited": limited, "start": start, "before": before, "after": after,
                  "returned": returned}))
"""


@pytest.mark.skipif(_libc() is None, reason="not glibc: its own allocator returns memory")
def test_memory_freed_by_worker_threads_goes_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                         timeout=300, check=True)
    figures = json.loads(out.stdout)
    assert figures["limited"], figures
    assert figures["before"] - figures["start"] > 100, figures  # freed, yet still resident
    assert figures["after"] - figures["start"] < 40, figures  # handed back (but the pinned)


ARROW_FREED = """
import gc, json
import numpy as np
import pandas as pd
from predictor.memory import release_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

ids = pd.Series(np.arange(3_000_000)).astype("str")  # Arrow memory where pyarrow is installed
storage = str(getattr(ids.array.dtype, "storage", "python"))
start = rss_mb()
for _ in range(3):  # what building a training table does with its text columns
    ids = ids.str.cat(["x"] * len(ids)).str.slice(0, 12)
del ids
gc.collect()
before = rss_mb()
release_memory()
print(json.dumps({"storage": storage, "start": start, "before": before, "after": rss_mb()}))
"""


@pytest.mark.skipif(_libc() is None, reason="not glibc: its own allocator returns memory")
def test_text_columns_freed_between_training_phases_go_back_to_the_system() -> None:
    """Pandas keeps ``str`` columns in Arrow's memory pool when pyarrow is installed (as
    where training runs), and that pool keeps freed pages: 220 MiB of a million-shipment
    training's RSS before its first fit held nothing but freed text."""
    out = subprocess.run([sys.executable, "-c", ARROW_FREED], capture_output=True,
                         text=True, timeout=300, check=True)
    figures = json.loads(out.stdout)
    if figures["storage"] != "pyarrow":
        pytest.skip("pyarrow is not installed: text columns are Python strings")
    # Freed, yet still resident (how much Arrow keeps varies: 86-170 MB seen).
    assert figures["before"] - figures["start"] > 50, figures
    assert figures["after"] - figures["start"] < 20, figures  # handed back (before: +84)


SETTLE = """
import gc, json
from service.memory import settle_collector
startup = [[n] for n in range(200_000)]  # what start-up leaves: modules, pools, models
settle_collector()
tracked = len(gc.get_objects())  # what a full collection would walk from now on
made = [[n] for n in range(1_000)]
print(json.dumps({"tracked": tracked, "young_every": gc.get_threshold()[0],
                  "after": len(gc.get_objects()), "startup_alive": len(startup)}))
"""


def test_start_up_objects_are_left_out_of_later_collections() -> None:
    """After start-up the API's collections walk only what requests make, not the ~180k
    objects of its modules (a full collection of those took ~120 ms of a request's time)."""
    out = subprocess.run([sys.executable, "-c", SETTLE], capture_output=True, text=True,
                         timeout=120, check=True)
    figures = json.loads(out.stdout)
    assert figures["startup_alive"] == 200_000
    assert figures["tracked"] < 5_000, figures
    assert figures["after"] - figures["tracked"] >= 1_000, figures  # new objects still tracked
    assert figures["young_every"] == 20_000, figures


CITY_ZONES = """
import gc, json
import zipcodes
from predictor.memory import give_back
from service.memory import limit_arenas
limit_arenas()
from service import zones

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6

zones.warm()
gc.collect(); give_back()
before = rss_mb()
found = zones.city_region_zone("Chicago", "IL", "US")
gc.collect(); give_back()
print(json.dumps({"found": list(found), "kept_mb": rss_mb() - before,
                  "records_cached": getattr(zipcodes, "_zips_cache", None) is not None}))
"""


def test_a_scan_located_by_city_and_state_leaves_no_zip_records_behind() -> None:
    """Carriers often send a scan's city and state without a postal code: the city table it
    is located with keeps ~20 MB, not the zipcodes package's 42k records (~115 MB more in
    every process that once saw such a scan)."""
    out = subprocess.run([sys.executable, "-c", CITY_ZONES], capture_output=True, text=True,
                         timeout=300, check=True)
    figures = json.loads(out.stdout)
    assert figures["found"] == ["America/Chicago", True], figures
    assert not figures["records_cached"], figures
    assert figures["kept_mb"] < 60, figures


NO_ARROW = """
import json, sys
from service.memory import limit_arenas, without_pyarrow
took = without_pyarrow()
limit_arenas()
import pandas as pd
import service.api.app, workers.main
frame = pd.DataFrame({"carrier": ["ups", "usps"]})
maps = open("/proc/self/maps").read()
print(json.dumps({"took": took, "arrow_mapped": "libarrow" in maps,
                  "strings": frame["carrier"].str.upper().tolist()}))
"""


def test_serving_processes_leave_arrow_unloaded_even_where_it_is_installed() -> None:
    """pyarrow comes only with the dask and dev extras; pandas would load it (43 MB of a
    worker's RSS, mostly Arrow's libraries) and the serving processes never use it."""
    out = subprocess.run([sys.executable, "-c", NO_ARROW], capture_output=True, text=True,
                         timeout=300, check=True)
    figures = json.loads(out.stdout)
    assert figures == {"took": True, "arrow_mapped": False, "strings": ["UPS", "USPS"]}


async def test_a_worker_has_its_zip_tables_before_it_answers_its_health_check(
    settings: Settings, clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    """The ZIP tables (~150 MB for a moment, ~55 MB kept) are built at start, not by the
    first refresh under traffic: what a worker keeps shows in its idle RSS, and the moment
    of building it is over before the worker says it is up."""
    zip_table.cache_clear()
    port = free_port()
    own = settings.model_copy(update={"worker_health_port": port})
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(own, clock, stop=stop))
    try:
        await _answers(f"http://127.0.0.1:{port}/healthz", worker)
        assert zip_table.cache_info().currsize == 1
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM shipment_etas") == 0  # no refresh
    finally:
        stop.set()
        await asyncio.wait_for(worker, 120)


async def test_the_api_has_its_zip_tables_before_the_first_request(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings,
    clock: ManualClock, pool: asyncpg.Pool,
) -> None:
    zip_table.cache_clear()
    client = await aiohttp_client(create_app(settings, clock))
    assert zip_table.cache_info().currsize == 1
    assert (await client.get("/healthz")).status == 200


async def test_the_memory_diagnostic_names_the_code_whose_memory_grows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PARCELCAST_MEMORY_DIAGNOSTIC_S: what an operator reads to find a leak is the line that
    allocated what is still held, with its callers."""
    kept: list[bytes] = []
    leak_line = _leak.__code__.co_firstlineno + 2
    caplog.set_level(logging.WARNING, logger="service.memory")
    watching = asyncio.create_task(watch_allocations_forever(lambda: None, every_s=0.05))
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while not any(f"test_memory.py:{leak_line} < tests/test_memory.py" in r.getMessage()
                      for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, caplog.text
            _leak(kept)
            await asyncio.sleep(0.05)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    assert not tracemalloc.is_tracing()


def _leak(kept: list[bytes]) -> None:
    """Memory that stays: 200 kB a call."""
    kept.extend(bytes(2000) for _ in range(100))


async def _answers(url: str, task: asyncio.Task[None], within_s: float = 120) -> None:
    """Wait until `url` gives any HTTP answer (the endpoint is served), or fail."""
    deadline = asyncio.get_running_loop().time() + within_s
    async with aiohttp.ClientSession() as session:
        while asyncio.get_running_loop().time() < deadline:
            assert not task.done(), task
            try:
                async with session.get(url):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered")
