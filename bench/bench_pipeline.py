"""Pipeline: the whole stack at a steady rate of events for a fixed time, then drained.

    python -m bench --only pipeline [--quick] [--rate 100] [--workers 2]
    python -m bench.bench_pipeline [--minutes 10] [--rate 100] [--workers 2]

The stack is the soak's (bench.bench_soak.running_stack): `parcelcast serve`, `--workers`
`parcelcast worker` processes, the Twilio and SMTP stand-ins as their own processes, a scratch
PostgreSQL database with a champion model, Redis. This process drives it over HTTP only.

Traffic is open-loop at `--rate` events per second (an order, a shipment and each scan are
one event each): every parcel gets its order and shipment, then two in-transit scans, out for
delivery and delivered, seconds apart, the simulator's shapes: 5 % of scans sent a second
time, one parcel in ten with its second in-transit scan arriving after out for delivery, scans
sent in batches as a carrier's webhook sends them. Requests start on schedule whatever the
answers do; after `--minutes` the traffic stops and the stack drains.

Reported (bench/results/pipeline.json and the table): offered and achieved events/s;
freshness = a scan's 202 -> its shipment's next ETA stored (`shipment_etas.stored_at`, the
first ETA whose refresh began after the 202), p50/p99/max, over the scans of parcels not yet
delivered, and how many never got one before the parcel was delivered; milestone scan (out for
delivery, delivered) -> its message recorded sent at the stand-in, p50/p99; hand-offs per work
item (from the workers' relay metrics); queue depth over time; the API's p99; RSS of every
process at start and end; lost and duplicate messages; the load average at the start and end
(the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np

from bench import db_samples
from bench.bench_render import _http
from bench.bench_soak import CLOCK_START, Stack, running_stack
from bench.common import markdown, rss_mb, write_result

SAMPLE_EVERY_S = 5.0
TICK_S = 0.05
BATCH_MAX = 50  # scans per webhook request
EVENTS_PER_PARCEL = 6  # order, shipment, 2 × in transit, out for delivery, delivered
DUPLICATE_SHARE = 0.05
OUT_OF_ORDER_SHARE = 0.10
MILESTONES = ("out_for_delivery", "delivered")


@dataclass
class Parcel:
    number: int
    # (due at, status, occurred_at offset in minutes) of each scan still to send
    scans: list[tuple[float, str, int]] = field(default_factory=list)


@dataclass
class Driver:
    stack: Stack
    rate: float
    rng: random.Random = field(default_factory=lambda: random.Random(15))
    parcels: dict[int, Parcel] = field(default_factory=dict)
    created: int = 0
    events_offered: int = 0
    events_accepted: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    # each accepted scan sent the first time: (shipment id, status, wall time of its 202)
    scans_202: list[tuple[str, str, float]] = field(default_factory=list)
    late_starts: int = 0
    resend: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> datetime:
        return CLOCK_START + timedelta(seconds=time.time() - self.stack.anchor)

    def new_parcel(self, at: float) -> Parcel:
        self.created += 1
        parcel = Parcel(self.created)
        t = at + self.rng.uniform(2, 5)
        plan = [("in_transit", 0), ("in_transit", 1), ("out_for_delivery", 2),
                ("delivered", 3)]
        times = []
        for _ in plan:
            times.append(t)
            t += self.rng.uniform(3, 8)
        if self.rng.random() < OUT_OF_ORDER_SHARE:
            # the second in-transit scan arrives after out for delivery
            times[1], times[2] = times[2], times[1] + 0.01
        parcel.scans = sorted((when, status, step) for when, (status, step)
                              in zip(times, plan, strict=True))
        self.parcels[parcel.number] = parcel
        return parcel

    def scan_body(self, parcel: Parcel, status: str, step: int) -> dict[str, Any]:
        occurred = CLOCK_START + timedelta(seconds=parcel.number * 0.01, minutes=step * 30)
        cities = ("Reno", "Sacramento", "Oakland", "San Francisco")
        return {"carrier": "ups", "tracking_number": f"1ZP{parcel.number:08d}",
                "status": status, "occurred_at": occurred.isoformat(),
                "location": {"city": cities[step], "region": "CA", "country": "US"}}

    async def request(self, session: aiohttp.ClientSession, method: str, path: str,
                      body: Any) -> tuple[int, Any]:
        started = time.perf_counter()
        try:
            async with session.request(method, self.stack.api_url + path, json=body) as answer:
                payload = await answer.json(content_type=None)
                status = answer.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            return 0, None
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        if status >= 400:
            self.errors[f"HTTP {status}"] = self.errors.get(f"HTTP {status}", 0) + 1
        return status, payload

    async def create(self, session: aiohttp.ClientSession, number: int) -> None:
        now = self.now()
        order = {"placed_at": now.isoformat(),
                 "customer": {"name": f"Pipe {number}", "email": f"p{number}@example.com",
                              "phone": f"+1415{2000000 + number % 8000000:07d}", "locale": "en",
                              "timezone": "America/Los_Angeles"},
                 "consent": {"email": True, "sms": True}}
        ship = {"order_id": f"po-{number}", "carrier": "ups", "service_level": "ground",
                "tracking_number": f"1ZP{number:08d}",
                "origin": {"postal_code": "10001", "country": "US"},
                "destination": {"postal_code": "94105", "country": "US"},
                "promised_delivery_date": (now + timedelta(days=4)).date().isoformat(),
                "label_created_at": now.isoformat()}
        status, _ = await self.request(session, "PUT", f"/v1/orders/po-{number}", order)
        self.events_accepted += status in (200, 201)
        status, _ = await self.request(session, "PUT", f"/v1/shipments/ps-{number}", ship)
        self.events_accepted += status in (200, 201)

    async def post_scans(self, session: aiohttp.ClientSession,
                         scans: list[tuple[str, str, dict[str, Any]]], repeat: bool) -> None:
        status, payload = await self.request(session, "POST", "/v1/tracking-events",
                                             [body for _, _, body in scans])
        if status == 202:
            at = time.time()
            self.events_accepted += len(scans)
            if not repeat:
                self.scans_202 += [(sid, st, at) for sid, st, _ in scans]

    async def run(self, session: aiohttp.ClientSession, duration: float,
                  sample: Any) -> float:
        gate = asyncio.Semaphore(256)
        tasks: set[asyncio.Task[None]] = set()

        def start(coro: Any) -> None:
            if gate.locked():
                self.late_starts += 1

            async def gated() -> None:
                async with gate:
                    await coro

            task = asyncio.create_task(gated())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        started = time.monotonic()
        next_sample = 0.0
        parcels_due = 0.0
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_sample:
                await sample(elapsed)
                next_sample += SAMPLE_EVERY_S
            # New parcels at rate / EVENTS_PER_PARCEL a second: with their scans the events
            # come at `rate` a second once the first parcels are under way.
            target = elapsed * self.rate / EVENTS_PER_PARCEL
            while parcels_due < target:
                parcels_due += 1
                parcel = self.new_parcel(elapsed)
                self.events_offered += 2
                start(self.create(session, parcel.number))
            batch: list[tuple[str, str, dict[str, Any]]] = []
            for parcel in list(self.parcels.values()):
                while parcel.scans and parcel.scans[0][0] <= elapsed:
                    _, status, step = parcel.scans.pop(0)
                    body = self.scan_body(parcel, status, step)
                    batch.append((f"ps-{parcel.number}", status, body))
                    if self.rng.random() < DUPLICATE_SHARE:
                        self.resend.append(body)
                if not parcel.scans:
                    del self.parcels[parcel.number]
            self.events_offered += len(batch)
            for i in range(0, len(batch), BATCH_MAX):
                start(self.post_scans(session, batch[i:i + BATCH_MAX], False))
            if self.resend and self.rng.random() < 0.5:
                again, self.resend = self.resend[:BATCH_MAX], self.resend[BATCH_MAX:]
                self.events_offered += len(again)
                start(self.post_scans(session, [("", "", b) for b in again], True))
            await asyncio.sleep(TICK_S)
        if tasks:
            await asyncio.gather(*tasks)
        return time.monotonic() - started


async def _worker_metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as answer:
        text = await answer.text()
    out: dict[str, float] = {}
    for reason, value in re.findall(
            r'^parcelcast_work_handoffs_total{reason="(\w+)"} ([0-9.e+]+)$', text, re.M):
        out[reason] = float(value)
    found = re.search(r"^parcelcast_work_max_handoffs ([0-9.e+]+)$", text, re.M)
    out["max"] = float(found[1]) if found else 0.0
    return out


async def _drain(db_url: str, limit_s: float) -> float:
    started = time.monotonic()
    conn = await asyncpg.connect(db_url)
    try:
        while time.monotonic() - started < limit_s:
            left = await conn.fetchval(
                """SELECT (SELECT count(*) FROM work_items)
                        + (SELECT count(*) FROM notifications
                           WHERE state IN ('scheduled', 'sending'))""")
            if left == 0:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return time.monotonic() - started


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def _latencies(conn: asyncpg.Connection, driver: Driver,
                     anchor: float) -> dict[str, Any]:
    """Freshness and milestone-to-message times, from the database after the drain."""
    scans = [s for s in driver.scans_202 if s[1] != "delivered"]
    walls = [datetime.fromtimestamp(at, UTC) for _, _, at in scans]
    business = [CLOCK_START + timedelta(seconds=at - anchor) for _, _, at in scans]
    rows = await conn.fetch(
        """SELECT x.ord, (SELECT min(e.stored_at) FROM shipment_etas e
                          WHERE e.shipment_id = x.sid AND e.predicted_at >= x.b) AS stored
           FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS x(sid, b, ord)""",
        [s[0] for s in scans], business)
    fresh, never = [], 0
    for row in rows:
        wall = walls[row["ord"] - 1]
        if row["stored"] is None:
            never += 1
        else:
            fresh.append(max(0.0, (row["stored"] - wall).total_seconds()))
    milestone = {(sid, st): at for sid, st, at in driver.scans_202 if st in MILESTONES}
    sent = await conn.fetch(
        """SELECT shipment_id, moment, sent_at FROM notifications
           WHERE state = 'sent' AND moment = ANY($1::text[])""", list(MILESTONES))
    to_message = []
    for row in sent:
        at = milestone.get((row["shipment_id"], row["moment"]))
        if at is not None:
            wall = anchor + (row["sent_at"] - CLOCK_START).total_seconds()
            to_message.append(max(0.0, wall - at))
    return {
        "freshness_s": {"p50": _pct(fresh, 50), "p99": _pct(fresh, 99),
                        "max": round(max(fresh), 3) if fresh else None, "n": len(fresh),
                        "never_before_delivered": never},
        "milestone_to_message_s": {"p50": _pct(to_message, 50), "p99": _pct(to_message, 99),
                                   "max": round(max(to_message), 3) if to_message else None,
                                   "n": len(to_message)},
    }


async def run(minutes: float, rate: float, workers: int, log_dir: Path,
              db_every: float = 0.0) -> dict[str, Any]:
    load_start = os.getloadavg()
    async with running_stack("pipeline", workers, log_dir) as stack:
        rss: dict[str, list[tuple[float, float]]] = {name: [] for name in stack.processes}
        depth: list[dict[str, float]] = []
        conn = await asyncpg.connect(stack.db_url)
        statements = db_every > 0 and await db_samples.statements_available(conn)
        db_series: list[dict[str, Any]] = []
        next_db = 0.0

        async def sample(elapsed: float) -> None:
            nonlocal next_db
            if db_every > 0 and elapsed >= next_db:
                db_series.append(await db_samples.sample(
                    conn, elapsed, driver.events_accepted, stack.processes, statements))
                next_db += db_every
            for name, process in stack.processes.items():
                rss[name].append((round(elapsed), round(rss_mb(process.pid), 1)))
            counts = {r["state"]: r["n"] for r in await conn.fetch(
                "SELECT state, count(*) AS n FROM work_items GROUP BY state")}
            depth.append({"t": round(elapsed), "pending": counts.get("pending", 0),
                          "enqueued": counts.get("enqueued", 0)})

        driver = Driver(stack, rate)
        connector = aiohttp.TCPConnector(limit=256)
        headers = {"Authorization": f"Bearer {stack.key}"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            ran_s = await driver.run(session, minutes * 60, sample)
        next_db = 0.0
        await sample(ran_s)
        drained_s = await _drain(stack.db_url, 600)
        await sample(ran_s + drained_s)
        figures = await _latencies(conn, driver, stack.anchor)
        end = dict(await conn.fetchrow(
            """SELECT (SELECT count(*) FROM work_items) AS work_left,
                      (SELECT count(*) FROM failed_work) AS quarantined,
                      (SELECT count(*) FROM notifications WHERE state = 'sent') AS sent,
                      (SELECT count(*) FROM notifications
                       WHERE state NOT IN ('sent', 'superseded', 'suppressed')) AS unsent,
                      (SELECT count(*) FROM tracking_events) AS events_stored,
                      (SELECT count(*) FROM shipment_etas) AS etas"""))
        autovacuum = await conn.fetchval("SHOW autovacuum")
        await conn.close()
        sms = await _http("GET", f"{stack.standins.twilio_url}/_stats")
        email = await _http("GET", f"{stack.standins.smtp_control}/_stats")
        metrics = [await _worker_metrics(port) for port in stack.health_ports]
    first = sum(m.get("first", 0) for m in metrics)
    again = sum(m.get("again", 0) for m in metrics)
    at_providers = sms["accepted"] + email["accepted"] - sms["duplicates"] - email["duplicates"]
    lat = np.array(driver.latencies_ms)
    return {
        "minutes": minutes, "workers": workers, "cores": len(os.sched_getaffinity(0)),
        "offered_events_per_s": round(driver.events_offered / ran_s, 1),
        "achieved_events_per_s": round(driver.events_accepted / ran_s, 1),
        "events_offered": driver.events_offered, "events_accepted": driver.events_accepted,
        "late_starts": driver.late_starts, "errors": driver.errors,
        **figures,
        "handoffs_per_item": {"mean": round((first + again) / first, 4) if first else None,
                              "max": max((m["max"] for m in metrics), default=0),
                              "items": first, "handed_again": again},
        "api_ms": {"p50": round(float(np.percentile(lat, 50)), 1),
                   "p99": round(float(np.percentile(lat, 99)), 1),
                   "max": round(float(lat.max()), 1)},
        "drained_after_traffic_s": round(drained_s, 1), **end,
        "messages": {"recorded_sent": end["sent"], "at_providers_once": at_providers,
                     "lost": end["unsent"] + max(0, end["sent"] - at_providers),
                     "duplicates": sms["duplicates"] + email["duplicates"]},
        "rss_mb_start_end": {name: (series[0][1], series[-1][1])
                             for name, series in rss.items()},
        "queue_depth": depth,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        **({"by_age": {"every_s": db_every, "autovacuum": autovacuum,
                       **db_samples.age_curve(db_series)},
            "db_samples": db_series} if db_every > 0 else {}),
    }


def rows_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    f, m, h = r["freshness_s"], r["milestone_to_message_s"], r["handoffs_per_item"]
    msgs = r["messages"]
    rss = r["rss_mb_start_end"]
    peak_depth = max((d["pending"] + d["enqueued"] for d in r["queue_depth"]), default=0)
    label = f"pipeline {r['minutes']:g} min, {r['workers']} worker(s)"
    return [
        {"figure": f"{label}: events/s achieved (offered)",
         "measured": f"{r['achieved_events_per_s']} ({r['offered_events_per_s']})",
         "floor": None, "ratio": None, "target": "2,000/s on 2 cores",
         "met": r["achieved_events_per_s"] >= 2000},
        {"figure": f"{label}: freshness scan 202 → ETA stored p50 / p99 / max (s); "
                   "never before delivered",
         "measured": f"{f['p50']} / {f['p99']} / {f['max']}; {f['never_before_delivered']}",
         "floor": None, "ratio": None, "target": "p99 ≤ 2 s",
         "met": f["p99"] is not None and f["p99"] <= 2},
        {"figure": f"{label}: milestone scan → message p50 / p99 (s)",
         "measured": f"{m['p50']} / {m['p99']}", "floor": None, "ratio": None,
         "target": "p99 ≤ 5 s", "met": m["p99"] is not None and m["p99"] <= 5},
        {"figure": f"{label}: hand-offs per work item mean / max",
         "measured": f"{h['mean']} / {h['max']:g}", "floor": None, "ratio": None,
         "target": "≤ 1.05", "met": h["mean"] is not None and h["mean"] <= 1.05},
        {"figure": f"{label}: API p99 under load (ms); peak queue depth; drained after (s)",
         "measured": f"{r['api_ms']['p99']}; {peak_depth}; {r['drained_after_traffic_s']}",
         "floor": None, "ratio": None, "target": "p99 ≤ 50 ms",
         "met": r["api_ms"]["p99"] <= 50},
        {"figure": f"{label}: RSS start → end (MB)",
         "measured": ", ".join(f"{k} {a:.0f}→{b:.0f}" for k, (a, b) in rss.items()),
         "floor": None, "ratio": None, "target": "flat, ≤ 300 MB",
         "met": all(b <= 300 for _, b in rss.values())},
        {"figure": f"{label}: messages lost / duplicate",
         "measured": f"{msgs['lost']} / {msgs['duplicates']} (of {msgs['recorded_sent']})",
         "floor": None, "ratio": None, "target": "0 / 0",
         "met": msgs["lost"] == 0 and msgs["duplicates"] == 0},
    ]


def notes_of(r: dict[str, Any], argv: list[str]) -> list[str]:
    f, m, h = r["freshness_s"], r["milestone_to_message_s"], r["handoffs_per_item"]
    load = r["load_average"]
    peak = max((d["pending"] + d["enqueued"] for d in r["queue_depth"]), default=0)
    return [
        f"`python -m bench.bench_pipeline {' '.join(argv)}`: {r['minutes']:g} min at "
        f"{r['offered_events_per_s']} events/s offered, {r['workers']} worker process(es), "
        f"{r['cores']} cores; load average (1 min) {load['start'][0]:.1f} at the start, "
        f"{load['end'][0]:.1f} at the end (the machine may be shared: latencies are only "
        "comparable between runs at a similar load)",
        f"achieved {r['achieved_events_per_s']} events/s; freshness p50/p99/max "
        f"{f['p50']}/{f['p99']}/{f['max']} s ({f['never_before_delivered']} scans of "
        f"{f['n'] + f['never_before_delivered']} never got an ETA before delivery); milestone "
        f"→ message p50/p99 {m['p50']}/{m['p99']} s; hand-offs per item {h['mean']} (max "
        f"{h['max']:g}, {h['handed_again']:g} handed again of {h['items']:g}); API p99 "
        f"{r['api_ms']['p99']} ms; peak queue depth {peak}; drained "
        f"{r['drained_after_traffic_s']} s after the traffic; messages lost "
        f"{r['messages']['lost']}, duplicate {r['messages']['duplicates']} of "
        f"{r['messages']['recorded_sent']}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/parcelcast-pipeline"))
    parser.add_argument("--db-every", type=float, default=0.0, metavar="SECONDS",
                        help="also record, every SECONDS, each statement's cost "
                             "(pg_stat_statements, if preloaded), the tables' dead rows and "
                             "sizes and each process's CPU (result: by_age, db_samples)")
    parser.add_argument("--name", default="pipeline",
                        help="result file name (bench/results/NAME.json)")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args.minutes, args.rate, args.workers, args.logs,
                                 args.db_every))
    rows = rows_of(result)
    write_result(args.name, rows, {"args": {k: str(v) for k, v in vars(args).items()},
                                   "notes": notes_of(result, sys.argv[1:]),
                                   "result": result})
    print(markdown(rows))
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("queue_depth", "db_samples", "by_age")}, indent=2,
                     default=str))


if __name__ == "__main__":
    main()
