"""The refresh job: a shipment's derived state, its ETA, and the notifications it calls for."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from predictor.lanes import lane_key
from service.store import accuracy, failed_work
from service.store import notifications as notifications_db
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store import work as work_db
from service.store.orders import Order
from service.store.shipments import Shipment
from service.store.transient import is_transient, retrying_contention
from service.zones import customer_zone
from workers.context import WorkerContext, worker_context
from workers.isolation import Item, bisect, quarantine
from workers.planning.planner import plan

log = logging.getLogger(__name__)
KIND = work_db.WorkKind.REFRESH_SHIPMENT


async def refresh_shipments(ctx: dict[str, Any], items: list[tuple[int, str]]) -> int:
    """A batch of refreshes: derived state first, then every ETA with one model call, then
    the shipments' plans with their work items retired, one short transaction for each
    PLAN_CHUNK shipments.

    A shipment that makes the batch statements fail is found by splitting the batch, and it
    alone is quarantined (workers.isolation); so is one whose plan fails (its chunk is split
    the same way). Each plan reads its shipment locked, as committed at that moment: a
    refresh handed over twice (a lost job re-handed while the first still runs) cannot plan
    on an older state after a newer one.
    """
    app = worker_context(ctx)
    now = app.clock.now()

    async def derive_and_predict(part: Sequence[Item]) -> None:
        ids = sorted({shipment_id for _, shipment_id in part})
        async with app.pool.acquire() as conn:
            # Single statements, no long transactions: the API updates the same rows.
            await retrying_contention(lambda: shipments_db.rederive_many(conn, ids, now))
            if app.eta is not None:
                await app.eta.refresh_many(conn, ids, now)

    async def poisoned(item: Item, exc: Exception) -> None:
        await quarantine(app, KIND, item, exc)

    ready = await bisect(items, derive_and_predict, poisoned)
    if not ready:
        return 0
    async with app.pool.acquire() as conn:
        async def plan_part(part: Sequence[Item]) -> None:
            await retrying_contention(partial(_plan, conn, app, part, now))

        done = []
        for start in range(0, len(ready), PLAN_CHUNK):
            done += await bisect(ready[start:start + PLAN_CHUNK], plan_part, poisoned)
        await failed_work.resolve(conn, KIND, [shipment_id for _, shipment_id in done])
    return len(done)


# Shipments planned in one transaction. Planning one per transaction cost the worker about
# six round trips per shipment (begin, lock, its order, the rules, retire, commit), a third
# of its CPU at 200 events/s; a chunk reads the rules, the orders and the locks once. Small,
# because the chunk's shipments stay locked until it commits and the API's ingest waits
# for those locks.
PLAN_CHUNK = 16


async def _plan(conn: asyncpg.Connection, app: WorkerContext, items: Sequence[Item],
                now: datetime) -> None:
    async with conn.transaction():
        shipments = await shipments_db.get_locked_many(
            conn, sorted({shipment_id for _, shipment_id in items}))
        orders = await orders_db.get_many(conn, (s.order_id for s in shipments))
        rules = await notifications_db.rules(conn)
        for shipment in shipments:
            await plan(conn, app.settings, shipment, now, orders=orders, rules=rules)
            if shipment.finished or shipment.lost:
                await score_outcome(conn, app, shipment, now, orders.get(shipment.order_id))
        await work_db.finish(conn, *(work_item_id for work_item_id, _ in items))


async def score_outcome(conn: asyncpg.Connection, app: WorkerContext, shipment: Shipment,
                        now: datetime, order: Order | None) -> int:
    """Score the ETAs shown for a shipment that ended (live accuracy): a delivery's, one
    insert (a replayed delivery scores nothing twice); a return's or a loss's misses stop
    growing, a cancelled shipment's scores go. `order`: the shipment's, if stored."""
    tz = customer_zone(order.timezone if order else None, shipment.destination_postal_code,
                       shipment.destination_country, app.settings.shop_timezone)
    lane = lane_key(shipment.origin_postal_code, shipment.destination_postal_code)
    try:
        # A savepoint: scoring is monitoring, and never holds up the delivery's message.
        async with conn.transaction():
            if shipment.status == "delivered":
                scored = await accuracy.score_delivered(conn, shipment.shipment_id, tz, lane,
                                                        now)
            else:
                scored = 0
            return scored + await accuracy.score_undelivered(conn, shipment.shipment_id)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.exception("could not score the ETAs of finished shipment %s",
                      shipment.shipment_id)
        return 0
