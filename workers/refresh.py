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
from service.store import orders as orders_db
from service.store import shipments as shipments_db
from service.store import work as work_db
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
    each shipment's plan with its work item retired, one short transaction per shipment.

    A shipment that makes the batch statements fail is found by splitting the batch, and it
    alone is quarantined (workers.isolation); so is one whose plan fails. Each plan reads its
    shipment locked, as committed at that moment: a refresh handed over twice (a lost job
    re-handed while the first still runs) cannot plan on an older state after a newer one.
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
        done = []
        for item in ready:
            try:
                await retrying_contention(partial(_plan, conn, app, item, now))
            except Exception as exc:
                if is_transient(exc):
                    raise
                await quarantine(app, KIND, item, exc)
            else:
                done.append(item[1])
        await failed_work.resolve(conn, KIND, done)
    return len(done)


async def _plan(conn: asyncpg.Connection, app: WorkerContext, item: Item,
                now: datetime) -> None:
    work_item_id, shipment_id = item
    async with conn.transaction():
        shipment = await shipments_db.get_locked(conn, shipment_id)
        if shipment is not None:
            await plan(conn, app.settings, shipment, now)
            if shipment.finished or shipment.lost:
                await score_outcome(conn, app, shipment, now)
        await work_db.finish(conn, work_item_id)


async def score_outcome(conn: asyncpg.Connection, app: WorkerContext, shipment: Shipment,
                        now: datetime) -> int:
    """Score the ETAs shown for a shipment that ended (live accuracy): a delivery's, one
    insert (a replayed delivery scores nothing twice); a return's or a loss's misses stop
    growing, a cancelled shipment's scores go."""
    order = await orders_db.get(conn, shipment.order_id)
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
