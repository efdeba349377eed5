"""arq job functions. Each is idempotent: the relay may hand the same work over twice."""

from __future__ import annotations

from typing import Any

from service.db import shipments as shipments_db
from service.db import work as work_db


async def refresh_shipment(ctx: dict[str, Any], work_item_id: int, shipment_id: str) -> bool:
    """Recompute a shipment's derived state, then retire its work item, in one transaction."""
    async with ctx["pg"].acquire() as conn, conn.transaction():
        found = await shipments_db.rederive(conn, shipment_id, ctx["clock"].now())
        await work_db.finish(conn, work_item_id)
    return found


FUNCTIONS = [refresh_shipment]
