"""ETA history: every prediction shown is kept; the shipment row carries the latest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg


async def store(conn: asyncpg.Connection, shipment_id: str, predicted_at: datetime,
                model_version: str, stage: str, p10: datetime, p50: datetime, p90: datetime,
                prob_late: float | None, reasons: list[dict[str, Any]]) -> int:
    eta_id: int = await conn.fetchval(
        """INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage, eta_p10,
                                      eta_p50, eta_p90, prob_late, reasons)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
        shipment_id, predicted_at, model_version, stage, p10, p50, p90, prob_late, reasons)
    await conn.execute(
        """UPDATE shipments SET eta_id = $2, eta_p10 = $3, eta_p50 = $4, eta_p90 = $5
           WHERE shipment_id = $1""", shipment_id, eta_id, p10, p50, p90)
    return eta_id


async def first_and_latest(conn: asyncpg.Connection, shipment_id: str
                           ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    rows = await conn.fetch(
        """(SELECT *, 'first' AS which FROM shipment_etas WHERE shipment_id = $1
            ORDER BY predicted_at, id LIMIT 1)
           UNION ALL
           (SELECT *, 'latest' FROM shipment_etas WHERE shipment_id = $1
            ORDER BY predicted_at DESC, id DESC LIMIT 1)""", shipment_id)
    found = {r["which"]: dict(r) for r in rows}
    return found.get("first"), found.get("latest")


async def scans(conn: asyncpg.Connection, carrier: str, tracking_number: str,
                until: datetime) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT status, occurred_at FROM tracking_events
           WHERE carrier = $1 AND tracking_number = $2 AND occurred_at <= $3
           ORDER BY occurred_at""", carrier, tracking_number, until)
    return [dict(r) for r in rows]
