"""The refresh job: a shipment's derived state, its ETA, and the notifications it calls for."""

from __future__ import annotations

from typing import Any

from service.store import shipments as shipments_db
from service.store import work as work_db
from workers.context import worker_context
from workers.planning.planner import plan


async def refresh_shipments(ctx: dict[str, Any], items: list[tuple[int, str]]) -> int:
    """A batch of refreshes: derived state first, then every ETA with one model call, then
    each shipment's plan with its work item retired, one short transaction per shipment."""
    app = worker_context(ctx)
    now = app.clock.now()
    ids = sorted({shipment_id for _, shipment_id in items})
    async with app.pool.acquire() as conn:
        # Single statements, no long transactions: the API updates the same rows.
        await shipments_db.rederive_many(conn, ids, now)
        if app.eta is not None:
            await app.eta.refresh_many(conn, ids, now)
        refreshed = {r.shipment_id: r for r in await shipments_db.get_many(conn, ids)}
        for work_item_id, shipment_id in items:
            async with conn.transaction():
                shipment = refreshed.get(shipment_id)
                if shipment is not None:
                    await plan(conn, app.settings, shipment, now)
                await work_db.finish(conn, work_item_id)
    return len(items)
