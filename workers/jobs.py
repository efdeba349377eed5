"""arq job functions. Each is idempotent: the relay may hand the same work over twice."""

from __future__ import annotations

from typing import Any

from service.db import shipments as shipments_db
from service.db import work as work_db
from workers.planner import plan
from workers.send import send_notification, send_notifications


async def refresh_shipments(ctx: dict[str, Any], items: list[tuple[int, str]]) -> int:
    """A batch of refreshes: derived state first, then every ETA with one model call, then
    each shipment's plan with its work item retired, one short transaction per shipment."""
    now = ctx["clock"].now()
    ids = sorted({shipment_id for _, shipment_id in items})
    async with ctx["pg"].acquire() as conn:
        # Single statements, no long transactions: the API updates the same rows.
        await shipments_db.rederive_many(conn, ids, now)
        eta = ctx.get("eta")
        if eta is not None:
            await eta.refresh_many(conn, ids, now)
        refreshed = {r["shipment_id"]: r for r in await shipments_db.get_many(conn, ids)}
        for work_item_id, shipment_id in items:
            async with conn.transaction():
                shipment = refreshed.get(shipment_id)
                if shipment is not None:
                    await plan(conn, ctx["settings"], shipment, now)
                await work_db.finish(conn, work_item_id)
    return len(items)


# The relay hands work over in batches (service.relay.BATCHED); send_notification is what
# each send in a batch runs, registered too for single hand-offs.
FUNCTIONS = [refresh_shipments, send_notification, send_notifications]
