"""Where a batch ETA refresh spends its time, per shipment: the read, the features, the
model, the reasons and the write, each timed on its own (best of N) on the scenario of
bench/bench_eta.py (its database is kept between runs: ``--fresh`` rebuilds it).

    python -m bench.refresh_profile [--batch 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
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


async def best(repeat: int, step: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await step()
        times.append(time.perf_counter() - started)
    return min(times)


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
        for name, step in stages.items():
            if only is not None and only not in name:
                continue
            seconds = await best(repeat, step)
            print(f"{name:40s} {seconds / n * 1e6:8.1f} us/shipment")
        raw = min(_raw(model, e) for e in encoded for _ in range(repeat))
        print(f"{'raw inplace_predict (floor)':40s} {raw * 1e6:8.1f} us/shipment")
    await pool.close()


def _raw(model: EtaModel, matrix: Any) -> float:
    started = time.perf_counter()
    model.booster.inplace_predict(matrix)
    return (time.perf_counter() - started) / len(matrix)


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
