"""The database's and the processes' cost over a run's age: a time series for the pipeline
benchmark (`python -m bench.bench_pipeline --db-every 30`).

Every sample holds, cumulative since the run started: per statement (pg_stat_statements,
when the server preloads it) calls, total execution time, rows and shared blocks hit/read;
per table (pg_stat_user_tables) live and dead rows, updates (HOT among them), scans and
(auto)vacuums, with the table's and its indexes' sizes; each process's CPU seconds; the
events accepted so far. `age_curve` turns the series into cost per event by minute of the
run, so a statement whose cost grows with the run's age stands out.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import asyncpg

TOP_STATEMENTS = 15
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


async def statements_available(conn: asyncpg.Connection) -> bool:
    """pg_stat_statements in this database, created if the server preloads it; its counts
    reset so the series starts with the run."""
    preloaded = await conn.fetchval("SHOW shared_preload_libraries")
    if "pg_stat_statements" not in preloaded:
        return False
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("SELECT pg_stat_statements_reset()")
    return True


async def sample(conn: asyncpg.Connection, elapsed: float, events: int,
                 processes: dict[str, subprocess.Popen[bytes]],
                 statements: bool) -> dict[str, Any]:
    tables = await conn.fetch(
        """SELECT relname, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd,
                  n_tup_del, seq_scan, seq_tup_read, idx_scan, vacuum_count,
                  autovacuum_count, autoanalyze_count,
                  pg_relation_size(relid) AS heap_bytes,
                  pg_indexes_size(relid) AS index_bytes
           FROM pg_stat_user_tables
           WHERE n_tup_ins + n_tup_upd + n_tup_del > 0""")
    out: dict[str, Any] = {
        "t": round(elapsed, 1), "events": events,
        "cpu_s": {name: round(cpu_seconds(p.pid), 2) for name, p in processes.items()
                  if p.poll() is None},
        "tables": {r["relname"]: {k: v for k, v in dict(r).items() if k != "relname"}
                   for r in tables},
    }
    if statements:
        rows = await conn.fetch(
            """SELECT queryid::text AS id, left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
                          AS query, calls, total_exec_time, rows, shared_blks_hit,
                      shared_blks_read
               FROM pg_stat_statements
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND calls > 0""")
        out["statements"] = {r["id"]: {"query": r["query"], "calls": r["calls"],
                                       "ms": round(r["total_exec_time"], 2),
                                       "rows": r["rows"],
                                       "blks": r["shared_blks_hit"] + r["shared_blks_read"]}
                             for r in rows}
    return out


def _delta(new: dict[str, Any], old: dict[str, Any] | None, key: str) -> float:
    return float(new.get(key, 0)) - float((old or {}).get(key, 0))


def age_curve(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Per interval between samples: events, each process's CPU ms per event, and the top
    statements' (by total time over the run) calls, mean ms and shared blocks per call and
    ms per event; the hot tables' dead rows and sizes at each sample."""
    if len(samples) < 2:
        return {}
    last = samples[-1].get("statements", {})
    top = sorted(last, key=lambda q: -last[q]["ms"])[:TOP_STATEMENTS]
    intervals = []
    for old, new in zip(samples, samples[1:], strict=False):
        events = new["events"] - old["events"]
        row: dict[str, Any] = {"t": new["t"], "events": events, "cpu_ms_per_event": {
            name: round(1000 * (cpu - old["cpu_s"].get(name, cpu)) / events, 3)
            if events else None for name, cpu in new["cpu_s"].items()}}
        per: dict[str, Any] = {}
        for q in top:
            now_q, was_q = new.get("statements", {}).get(q), old.get("statements", {}).get(q)
            if now_q is None:
                continue
            calls = _delta(now_q, was_q, "calls")
            ms = _delta(now_q, was_q, "ms")
            per[q] = {"calls": int(calls),
                      "mean_ms": round(ms / calls, 3) if calls else None,
                      "blks_per_call": round(_delta(now_q, was_q, "blks") / calls, 1)
                      if calls else None,
                      "ms_per_event": round(ms / events, 4) if events else None}
        row["statements"] = per
        row["tables"] = {name: {"live": t["n_live_tup"], "dead": t["n_dead_tup"],
                                "heap_kb": t["heap_bytes"] // 1024,
                                "index_kb": t["index_bytes"] // 1024,
                                "autovacuums": t["autovacuum_count"],
                                "vacuums": t["vacuum_count"]}
                         for name, t in new["tables"].items()
                         if name in ("work_items", "shipments", "notifications",
                                     "shipment_etas", "orders", "tracking_events")
                         or name.startswith("tracking_events")}
        intervals.append(row)
    return {"queries": {q: last[q]["query"] for q in top}, "intervals": intervals}
