"""Live accuracy's judging poll at scale: its plans and buffers, before and after 0016.

    .venv/bin/python -m bench.accuracy_plan [--shipments 400000]

A scratch database with `--shipments` parcels labelled over 40 days (four shown ETAs each,
one 'shipped' message each, 90 % delivered on their p50's day, ~2 % returned, ~0.5 % lost,
the rest still out; the misses of those still out already judged), then EXPLAIN (ANALYZE,
BUFFERS) of:

- the poll's read before (the 0015 statement: every ETA of every parcel in flight, 30 days
  of p90s) and after (the p90s since the last poll less a day, index-driven), and the
  first poll after (30 days, as before);
- the poll's write before (every censored row's error rewritten) and after (one row);
- the rolling figure (`champion_live_accuracy`), the error now computed when read.

Buffers (shared blocks hit + read) do not depend on the machine's load; times do (the load
average is printed with them). A statement running past TIMEOUT_S is reported as such (the
0015 read grows with the square of the parcels in flight). Nothing is written to
bench/results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.common import ScratchDatabase
from service.store import accuracy

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TIMEOUT_S = 300  # a statement that runs longer is reported as such

# The 0015 poll, verbatim (its read, and its write).
BEFORE_OVERDUE = """
WITH s AS (
    SELECT shipment_id, carrier, service_level, order_id, origin_postal_code,
           destination_postal_code, destination_country FROM shipments
    WHERE status NOT IN ('cancelled', 'delivered', 'returned_to_sender') AND lost_at IS NULL
      AND delivered_at IS NULL
      AND label_created_at > $1::timestamptz - $2::interval - interval '30 days'),
e AS (
    SELECT e.* FROM shipment_etas e JOIN s USING (shipment_id)
    WHERE e.predicted_at <= $1 AND NOT e.shadow),
picked AS (
    (SELECT DISTINCT ON (shipment_id) id, 'first' AS kind FROM e
     ORDER BY shipment_id, predicted_at, id)
    UNION ALL
    (SELECT DISTINCT ON (shipment_id, stage) id, 'stage' FROM e
     ORDER BY shipment_id, stage, predicted_at, id)
    UNION ALL
    (SELECT DISTINCT told.id, 'told' FROM notifications n JOIN s USING (shipment_id)
     CROSS JOIN LATERAL (SELECT id FROM e WHERE e.shipment_id = n.shipment_id
                           AND e.predicted_at <= n.sent_at
                         ORDER BY predicted_at DESC, id DESC LIMIT 1) told
     WHERE n.state = 'sent' AND n.moment <> 'delivered' AND n.sent_at <= $1))
SELECT e.shipment_id, e.id AS eta_id, p.kind, e.eta_p90, o.timezone
FROM picked p JOIN e ON e.id = p.id JOIN s USING (shipment_id)
LEFT JOIN orders o ON o.order_id = s.order_id
WHERE e.eta_p90 < $1 AND e.eta_p90 >= $1::timestamptz - $2::interval
  AND NOT EXISTS (SELECT 1 FROM eta_scores x WHERE x.eta_id = e.id AND x.kind = p.kind)
"""
BEFORE_EXTEND = """
UPDATE eta_scores SET error_days = extract(epoch FROM $1 - eta_p50) / 86400.0,
                      abs_error_days = abs(extract(epoch FROM $1 - eta_p50)) / 86400.0
WHERE censored AND judged_at >= $1::timestamptz - $2::interval AND judged_at <= $1"""
AFTER_WRITE = accuracy.MARK_CHECKED
# The scores the scratch database starts with (their values follow, per kind of parcel).
SCORE_ROWS = """
        INSERT INTO eta_scores (shipment_id, eta_id, kind, model_version, stage, carrier,
                                service_level, lane, predicted_at, eta_p10, eta_p50, eta_p90,
                                delivered_at, error_days, abs_error_days, inside_window,
                                on_time_shown, scored_at, judged_at, censored)
        SELECT e.shipment_id, e.id, 'stage', e.model_version, e.stage, 'ups', 'ground', 'l',
               e.predicted_at, e.eta_p10, e.eta_p50, e.eta_p90, """
BEFORE_FIGURE = """SELECT count(*), avg(abs_error_days), avg(error_days) FROM eta_scores
WHERE model_version = $1 AND judged_at >= $2 AND kind = 'stage'"""
AFTER_FIGURE = f"""SELECT count(*), avg(abs({accuracy.ERROR})), avg({accuracy.ERROR})
FROM eta_scores WHERE model_version = $1 AND judged_at >= $2 AND kind = 'stage'"""

async def populate(conn: asyncpg.Connection, n: int) -> None:
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("""
        CREATE TEMP TABLE p AS
        SELECT i, $2::timestamptz - (random() * interval '40 days') AS label,
               random() AS r FROM generate_series(1, $1) i""", n, NOW)
    order_columns = await conn.fetch(
        """SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'
             AND is_nullable = 'NO' AND column_default IS NULL""")
    assert {r["column_name"] for r in order_columns} <= {
        "order_id", "placed_at", "customer_name", "created_at", "updated_at", "locale"}, \
        order_columns
    await conn.execute("""
        INSERT INTO orders (order_id, placed_at, customer_name, locale, timezone,
                            created_at, updated_at)
        SELECT 'o-' || i, label, 'x', 'en', 'America/Chicago', label, label FROM p""")
    # 90 % delivered on their p50's day once it passed, ~2 % returned, ~0.5 % lost.
    await conn.execute("""
        INSERT INTO shipments (shipment_id, order_id, carrier, service_level,
                               tracking_number, status, status_rank, label_created_at,
                               delivered_at, lost_at, created_at, updated_at)
        SELECT 's-' || i, 'o-' || i, 'ups', 'ground', 'T' || i,
               CASE WHEN label + interval '4 days' > $1 THEN 'in_transit'
                    WHEN r < 0.90 THEN 'delivered'
                    WHEN r < 0.92 THEN 'returned_to_sender' ELSE 'in_transit' END,
               CASE WHEN label + interval '4 days' <= $1 AND r < 0.92 THEN 2 ELSE 1 END,
               label,
               CASE WHEN label + interval '4 days' <= $1 AND r < 0.90
                    THEN label + interval '4 days' END,
               CASE WHEN label + interval '4 days' <= $1 AND r >= 0.995
                    THEN label + interval '6 days' END,
               label, label FROM p""", NOW)
    await conn.execute("""
        INSERT INTO shipment_etas (shipment_id, predicted_at, model_version, stage, eta_p10,
                                   eta_p50, eta_p90, prob_late, reasons, shadow)
        SELECT 's-' || i, label + k * interval '20 hours', 'eta-a',
               (ARRAY['label', 'first_scan', 'later', 'later'])[k + 1],
               label + interval '3 days', label + interval '4 days',
               label + interval '5 days' + k * interval '3 hours', 0.1, '[]'::jsonb, false
        FROM p CROSS JOIN generate_series(0, 3) k
        WHERE label + k * interval '20 hours' <= $1""", NOW)
    await conn.execute("""
        INSERT INTO notifications (shipment_id, order_id, moment, channel, recipient, locale,
                                   state, due_at, created_at, sent_at, updated_at)
        SELECT 's-' || i, 'o-' || i, 'shipped', 'email', 'x@example.com', 'en', 'sent',
               label + interval '21 hours', label, label + interval '21 hours', label
        FROM p WHERE label + interval '21 hours' <= $1""", NOW)
    # The misses already judged: each late parcel's ETAs whose date ended (p90 + a day).
    await conn.execute(SCORE_ROWS + """NULL, 1, 1, false, false,
               $1, e.eta_p90 + interval '1 day', true
        FROM shipment_etas e JOIN shipments s USING (shipment_id)
        WHERE s.delivered_at IS NULL AND e.eta_p90 + interval '1 day' <= $1""", NOW)
    await conn.execute(SCORE_ROWS + """s.delivered_at, 0, 0, true,
               true, s.delivered_at, s.delivered_at, false
        FROM shipment_etas e JOIN shipments s USING (shipment_id)
        WHERE s.delivered_at IS NOT NULL AND e.predicted_at <= s.delivered_at""")
    await accuracy.mark_checked(conn, NOW - timedelta(minutes=1))
    await conn.execute("VACUUM ANALYZE")


def _nodes(plan: dict[str, Any]) -> list[str]:
    name = plan["Node Type"]
    if "Index Name" in plan:
        name += f" {plan['Index Name']}"
    elif "Relation Name" in plan:
        name += f" {plan['Relation Name']}"
    out = [name]
    for child in plan.get("Plans", []):
        out += _nodes(child)
    return out


async def explain(conn: asyncpg.Connection, sql: str, *args: Any, write: bool = False
                  ) -> dict[str, Any]:
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"SET LOCAL statement_timeout = '{TIMEOUT_S}s'")
        raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    except asyncpg.QueryCanceledError:
        return {"timeout_s": TIMEOUT_S}
    finally:
        await tx.rollback()  # a write measured is never kept
    top = json.loads(raw)[0]
    plan = top["Plan"]

    def total(p: dict[str, Any], key: str) -> int:
        return int(p.get(key, 0))
    nodes = _nodes(plan)
    rows = plan["Plans"][0]["Actual Rows"] if write else plan.get("Actual Rows")
    return {"rows": rows, "ms": round(top["Execution Time"], 1),
            "buffers": total(plan, "Shared Hit Blocks") + total(plan, "Shared Read Blocks"),
            "seq_scans": sorted({n for n in nodes if n.startswith("Seq Scan")}),
            "indexes": sorted({n.split(" ", 2)[-1] for n in nodes if "Index" in n}),
            "write": write}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shipments", type=int, default=400_000)
    args = parser.parse_args()
    async with ScratchDatabase() as db:
        conn = await asyncpg.connect(db.url)
        await populate(conn, args.shipments)
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM shipments) AS shipments,
                      (SELECT count(*) FROM shipments WHERE delivered_at IS NULL) AS out,
                      (SELECT count(*) FROM shipment_etas) AS etas,
                      (SELECT count(*) FROM eta_scores) AS scores,
                      (SELECT count(*) FROM eta_scores WHERE censored) AS censored""")
        print(json.dumps(dict(counts)))
        last = NOW - timedelta(minutes=1)
        lookback = accuracy.OVERDUE_LOOKBACK
        runs: dict[str, tuple[Any, ...]] = {
            "read before (0015)": (BEFORE_OVERDUE, NOW, lookback),
            "read after, a poll": (accuracy.OVERDUE, NOW, accuracy.judge_since(last, NOW)),
            "read after, first poll": (accuracy.OVERDUE, NOW, accuracy.judge_since(None, NOW)),
            "write before (0015)": (BEFORE_EXTEND, NOW, lookback),
            "write after": (AFTER_WRITE, NOW),
            "figure before (0015)": (BEFORE_FIGURE, "eta-a", NOW - timedelta(days=7)),
            "figure after": (AFTER_FIGURE, "eta-a", NOW - timedelta(days=7)),
        }
        for name, (sql, *params) in runs.items():
            result: dict[str, Any] = {}
            for _ in range(2):  # the second: a warm cache for each
                if "timeout_s" not in result:
                    result = await explain(conn, str(sql), *params,
                                           write=name.startswith("write"))
            print(f"{name:24} {json.dumps(result)}  load {os.getloadavg()[0]:.1f}", flush=True)
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
