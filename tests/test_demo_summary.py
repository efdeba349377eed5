"""The demo's verdict on the window: every first window that had ended by the replay's end
counts, delivered or not (a parcel still out then was late for its window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from service.demo.summary import first_windows_ended
from tests.builders import event, order, shipment

NOV = datetime(2026, 11, 1, tzinfo=UTC)


async def test_every_first_window_that_ended_is_judged_delivered_or_not(
    client: TestClient, admin: dict[str, str], pool: asyncpg.Pool,
) -> None:
    assert (await client.put("/v1/orders/o-1", json=order(), headers=admin)).status < 300
    # First windows shown (customer in Los Angeles): parcels 1-4 Nov 3 20:00 to Nov 4
    # 20:00 UTC (the date shown: Nov 4), parcel 5 until Nov 8, after the replay's end.
    ends = {1: NOV + timedelta(days=3, hours=20), 2: NOV + timedelta(days=3, hours=20),
            3: NOV + timedelta(days=3, hours=20), 4: NOV + timedelta(days=3, hours=20),
            5: NOV + timedelta(days=7)}
    delivered = {1: "2026-11-04T10:00:00Z",  # inside
                 2: "2026-11-03T10:00:00Z",  # before the window
                 4: "2026-11-05T10:00:00Z"}  # after it; parcel 3 is still out at the end
    async with pool.acquire() as conn:
        for n, p90 in ends.items():
            answer = await client.put(f"/v1/shipments/s-{n}", headers=admin,
                                      json=shipment(tracking_number=f"1Z000{n}"))
            assert answer.status < 300
            await conn.execute(
                """INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage,
                                              eta_p10, eta_p50, eta_p90, prob_late, reasons)
                   VALUES ($1, $2, 'm1', 'label', $3, $3, $4, 0.1, '[]'),
                          ($1, $2 + interval '1 hour', 'm1', 'label', $2, $2, $2, 0.1, '[]')""",
                f"s-{n}", NOV + timedelta(days=1, hours=9), p90 - timedelta(days=1), p90)
    for n, at in delivered.items():
        answer = await client.post("/v1/tracking-events", headers=admin,
                                   json=event("delivered", at, tracking_number=f"1Z000{n}"))
        assert answer.status < 300
    async with pool.acquire() as conn:
        verdict = await first_windows_ended(conn, NOV, NOV + timedelta(days=5))
    # Judged on the delivered parcels only, 1 of 3 inside and 2 of 3 by the date shown.
    assert verdict == {"windows_ended": 4, "inside_window": 0.25,
                       "dates_passed": 4, "on_or_before_shown_date": 0.5}
