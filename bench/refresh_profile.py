"""Where a batch ETA refresh spends its time, per shipment: the read, the features, the
model, the reasons and the write, each timed on its own (best of N) on the scenario of
bench/bench_eta.py (its database is kept between runs: ``--fresh`` rebuilds it).

Each stage is timed three ways: wall time, this process's CPU time (all its threads) and
the CPU time of the PostgreSQL backend serving it (read from /proc when the server runs on
this machine, else "-"). On a loaded machine the wall time mostly measures the wait for a
core; the CPU times are what a stage costs. One shipment per call: ``--batch 1 --total 300``.

    python -m bench.refresh_profile [--batch 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.bench_eta import START
from predictor.features import serving_rows
from predictor.model import EtaModel
from predictor.simulator import simulate
from service.clock import ManualClock
from service.eta.runtime import EtaRuntime, predict_many, refresh_inputs
from service.eta.training import train_and_register
from service.store import etas
from service.store.embedded import with_database
from service.store.history import load_history
from service.store.migrations import upgrade
from service.store.pool import create_pool
from tests.servers import postgres_admin_url

NAME = "parcelcast_refresh_profile"
NOW = START + timedelta(days=50)


async def prepare(fresh: bool) -> str:
    admin = postgres_admin_url(Path("/tmp/parcelcast-bench"))
    url = with_database(admin, NAME)
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", NAME)
        if exists and not fresh:
            return url
        await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, url)
    history = simulate(20_000, 60, START, seed=5)
    db = await asyncpg.connect(url)
    try:
        await load_history(db, history.orders, history.shipments, history.events, NOW)
        await train_and_register(db, NOW, until=NOW, rounds=400)
        await db.execute(
            """UPDATE shipments SET status = 'in_transit', delivered_at = NULL
               WHERE label_created_at < $1 AND label_created_at > $1::timestamptz - interval
               '10 days' AND (delivered_at IS NULL OR delivered_at > $1)""", NOW)
    finally:
        await db.close()
    return url


class Timer:
    """Wall, client CPU and server CPU time of a stage, best of N each."""

    def __init__(self, server_pid: int) -> None:
        self.stat = f"/proc/{server_pid}/stat"
        self.ticks = os.sysconf("SC_CLK_TCK")

    def server_cpu(self) -> float:
        """The backend's CPU seconds so far (NaN when it is not on this machine)."""
        try:
            with open(self.stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / self.ticks

    async def best(self, repeat: int, step: Callable[[], Awaitable[Any]]
                   ) -> tuple[float, float, float]:
        walls, cpus, servers = [], [], []
        for _ in range(repeat):
            server, cpu, started = self.server_cpu(), time.process_time(), time.perf_counter()
            await step()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
            servers.append(self.server_cpu() - server)
        return min(walls), min(cpus), min(servers)


async def run(batch: int, repeat: int, fresh: bool, total: int, only: str | None) -> None:
    url = await prepare(fresh)
    pool = await create_pool(url, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        ids = [r["shipment_id"] for r in await conn.fetch(
            """SELECT shipment_id FROM shipments WHERE label_created_at < $1
               AND label_created_at > $1::timestamptz - interval '10 days'
               AND status = 'in_transit' ORDER BY shipment_id""", NOW)][:total]
        runtime = EtaRuntime(ManualClock(NOW), check_every=3600, recent_every=3600)
        await runtime.refresh_many(conn, ids[:batch], NOW)
        model = runtime.model
        assert isinstance(model, EtaModel)
        recent = await runtime.recent(conn, NOW)
        parts = [ids[i:i + batch] for i in range(0, len(ids), batch)]
        inputs = [await refresh_inputs(conn, p, NOW) for p in parts]
        features = [serving_rows(r, s, NOW, recent) for r, s in inputs]
        encoded = [model.encode(f) for f in features]
        predicted = [predict_many(model, r, s, NOW, recent) for r, s in inputs]
        n = len(ids)

        async def each(fn: Callable[[int], Any]) -> None:
            for k in range(len(parts)):
                fn(k)

        async def reads() -> None:
            for p in parts:
                await refresh_inputs(conn, p, NOW)

        async def writes() -> None:
            for (rows, _), preds in zip(inputs, predicted, strict=True):
                await etas.store_many(conn, [r["shipment_id"] for r in rows], NOW,
                                      model.version, preds)

        async def whole() -> None:
            for p in parts:
                await runtime.refresh_many(conn, p, NOW)

        stages = {
            "read (refresh_inputs)": reads,
            "features (serving_rows)": lambda: each(
                lambda k: serving_rows(*inputs[k], NOW, recent)),
            "encode": lambda: each(lambda k: model.encode(features[k])),
            "booster predict (inplace)": lambda: each(
                lambda k: model.predict_raw(features[k], encoded[k])),
            "predict_explained (model + reasons)": lambda: each(
                lambda k: model.predict_explained(features[k])),
            "predict_many (features..Prediction)": lambda: each(
                lambda k: predict_many(model, *inputs[k], NOW, recent)),
            "write (store_many)": writes,
            "whole refresh_many": whole,
        }
        timer = Timer(conn.get_server_pid())
        print(f"{'us/shipment, best of ' + str(repeat):40s} {'wall':>8s} {'cpu':>8s} "
              f"{'server':>8s}   (load {os.getloadavg()[0]:.1f})")
        for name, step in stages.items():
            if only is not None and only not in name:
                continue
            wall, cpu, server = await timer.best(repeat, step)
            print(f"{name:40s} {wall / n * 1e6:8.1f} {cpu / n * 1e6:8.1f} "
                  f"{server / n * 1e6:8.1f}")
        raw = min(_raw(model, e) for e in encoded for _ in range(repeat))
        cpu_raw = min(_raw(model, e, time.process_time) for e in encoded for _ in range(repeat))
        print(f"{'raw inplace_predict (floor)':40s} {raw * 1e6:8.1f} {cpu_raw * 1e6:8.1f}"
              f"{'':>9s}   (load {os.getloadavg()[0]:.1f})")
    await pool.close()


def _raw(model: EtaModel, matrix: Any,
         clock: Callable[[], float] = time.perf_counter) -> float:
    started = clock()
    model.booster.inplace_predict(matrix)
    return (clock() - started) / len(matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--only", help="only the stages whose name contains this")
    args = parser.parse_args()
    asyncio.run(run(args.batch, args.repeat, args.fresh, args.total, args.only))


if __name__ == "__main__":
    main()
