"""The every-minute rebuild of recent lane performance (`EtaRuntime.recent`) as the deliveries in
its 21-day window grow: CPU per rebuild, the RSS peak it makes, and what stays after freed
memory is handed back (as a serving process does every 30 s).

    python -m bench.recent_profile [--deliveries 2000 10000 30000 60000] [--lanes 1]

A scratch database gets that many delivered shipments (cumulatively, on `--lanes` distinct
destinations), and this process, set up as a worker is (two malloc arenas, the ZIP tables
built), rebuilds the table three times at each size. Prints one line a size; the load average
is printed with them (the CPU figures are process time, the RSS its own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

from service.memory import limit_arenas, without_pyarrow

NOW = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)


async def run(sizes: list[int], lanes: int) -> None:
    from bench.common import ScratchDatabase, rss_mb
    from predictor import memory
    from service.clock import ManualClock
    from service.eta.runtime import EtaRuntime
    from service.store.pool import create_pool
    from service.zones import warm

    warm()
    async with ScratchDatabase() as db:
        pool = await create_pool(db.url)
        runtime = EtaRuntime(ManualClock(NOW), recent_every=0.0)  # rebuilt at every call
        have = 0
        async with pool.acquire() as conn:
            await conn.execute("SET session_replication_role = replica")  # no orders needed
            for size in sizes:
                await conn.execute(
                    """INSERT INTO shipments (shipment_id, order_id, carrier, service_level,
                         tracking_number, origin_postal_code, origin_country,
                         destination_postal_code, destination_country, label_created_at,
                         shipped_at, delivered_at, status, created_at, updated_at)
                       SELECT 'x' || i, 'o' || i, 'ups', 'ground', '1Z' || i, '10001', 'US',
                              lpad((10000 + i % $4)::text, 5, '0'), 'US',
                              $1::timestamptz - interval '3 days',
                              $1::timestamptz - interval '2 days',
                              $1::timestamptz - (i % 1000) * interval '1 minute',
                              'delivered', $1, $1
                       FROM generate_series($2::int, $3::int - 1) i""",
                    NOW, have, size, lanes)
                have = max(have, size)
                before = rss_mb(os.getpid())
                cpu = time.process_time()
                peak = 0.0
                for _ in range(3):
                    await runtime.recent(conn, NOW)
                    peak = max(peak, rss_mb(os.getpid()))
                cpu = (time.process_time() - cpu) / 3
                memory.give_back()
                print(f"{size:>7} deliveries, {lanes} lane(s): {cpu * 1000:5.0f} ms CPU a "
                      f"rebuild, RSS {before:.1f} -> peak {peak:.1f} -> {rss_mb(os.getpid()):.1f}"
                      f" MB after handing back; load {os.getloadavg()[0]:.1f}", flush=True)
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, nargs="+", default=[2000, 10000, 30000, 60000])
    parser.add_argument("--lanes", type=int, default=1, help="distinct destinations")
    args = parser.parse_args()
    limit_arenas()  # as `parcelcast worker` does, before any thread
    without_pyarrow()
    asyncio.run(run(args.deliveries, args.lanes))


if __name__ == "__main__":
    main()
