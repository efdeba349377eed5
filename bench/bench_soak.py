"""Soak: minutes of mixed traffic at a fixed rate against the real stack, watching for errors,
latency and memory that creeps.

    python -m bench.bench_soak [--minutes 10] [--rate 100]

The stack is what production runs, as processes: `parcelcast serve`, two `parcelcast worker`s
(each with its health endpoint), the Twilio and SMTP stand-ins, a scratch database with a
champion model, Redis. Every process runs on one clock that starts at noon in the customers'
zone (so SMS are never held for quiet hours) and runs at real speed.

The traffic is open-loop: requests are started on a fixed schedule whatever the answers do
(`--rate` per second): new orders and shipments, single scans (10 % sent twice), batches of
20 scans, shipment reads and tracking-number lookups. Parcels move label -> in transit -> out
for delivery -> delivered a few seconds apart, so every milestone sends its messages.

Results (bench/results/soak.json): error rate; p50/p99/max latency; the API's and each
worker's RSS sampled every 10 s, with the slope of a line fitted over the second half of the
run (MB per minute: flat means near zero); at the end, work left, messages sent once at the
stand-ins, quarantined work and the workers' loop restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np

from bench.bench_render import Standins, _http, standin_processes
from bench.common import ScratchDatabase, markdown, rss_mb, write_result
from service.store.embedded import free_port
from service.store.pool import connect
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.models import install_champion, small_model
from tests.servers import redis_url

ROOT = Path(__file__).resolve().parents[1]
# Noon in Los Angeles, the customers' zone.
CLOCK_START = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)
SAMPLE_EVERY_S = 10.0
STEPS = ("in_transit", "out_for_delivery", "delivered")
# Of each second's requests: (kind, share).
MIX = (("order+shipment", 0.10), ("scan", 0.55), ("scan twice", 0.06), ("batch of 20", 0.02),
       ("read shipment", 0.17), ("find by tracking number", 0.10))
ORDER_KINDS = [kind for kind, _ in MIX]
WEIGHTS = [share for _, share in MIX]


@dataclass
class Parcel:
    number: int
    step: int = -1  # index into STEPS of the last scan sent
    next_at: float = 0.0


@dataclass
class Traffic:
    base: str
    headers: dict[str, str]
    clock_anchor: float
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    parcels: list[Parcel] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    late_starts: int = 0
    created: int = 0

    def now(self) -> datetime:
        return CLOCK_START + timedelta(seconds=time.time() - self.clock_anchor)

    def scan(self, parcel: Parcel, status: str) -> dict[str, Any]:
        occurred = self.now() - timedelta(minutes=2)
        return {"carrier": "ups", "tracking_number": f"1ZS{parcel.number:08d}",
                "status": status, "occurred_at": occurred.isoformat(),
                "location": {"city": "Oakland", "region": "CA", "postal_code": "94607",
                             "country": "US"}}

    def _due_scan(self) -> dict[str, Any] | None:
        """The next scan of a parcel whose time has come (None when none is due)."""
        now = time.monotonic()
        for _ in range(8):
            if not self.parcels:
                return None
            parcel = self.parcels[self.rng.randrange(len(self.parcels))]
            if parcel.next_at <= now and parcel.step < len(STEPS) - 1:
                parcel.step += 1
                parcel.next_at = now + self.rng.uniform(3, 12)
                body = self.scan(parcel, STEPS[parcel.step])
                if parcel.step == len(STEPS) - 1:
                    self.parcels.remove(parcel)
                return body
        return None

    def request(self, kind: str) -> tuple[str, str, Any]:
        """(method, path, body) of one request of `kind` (a read when no scan is due)."""
        if kind == "order+shipment" or not self.parcels:
            self.created += 1
            parcel = Parcel(self.created, next_at=time.monotonic() + self.rng.uniform(2, 6))
            self.parcels.append(parcel)
            return "NEW", str(parcel.number), None
        if kind in ("scan", "scan twice"):
            body = self._due_scan()
            if body is not None:
                return "POST", "/v1/tracking-events", body
        elif kind == "batch of 20":
            scans = [s for s in (self._due_scan() for _ in range(20)) if s is not None]
            if scans:
                return "POST", "/v1/tracking-events", scans
        # Reads, and whatever scans were not due yet (the rate stays what was asked).
        parcel = self.parcels[self.rng.randrange(len(self.parcels))]
        if kind == "read shipment" or self.rng.random() < 0.6:
            return "GET", f"/v1/shipments/ss-{parcel.number}", None
        return "GET", f"/v1/shipments?tracking_number=1ZS{parcel.number:08d}", None

    async def send(self, session: aiohttp.ClientSession, kind: str, method: str, path: str,
                   body: Any) -> None:
        if method == "NEW":
            number = int(path)
            order = {"placed_at": self.now().isoformat(),
                     "customer": {"name": f"Soak {number}", "email": f"s{number}@example.com",
                                  "phone": f"+1415555{number % 10000:04d}", "locale": "en",
                                  "timezone": "America/Los_Angeles"},
                     "consent": {"email": True, "sms": True}}
            shipment = {"order_id": f"so-{number}", "carrier": "ups", "service_level": "ground",
                        "tracking_number": f"1ZS{number:08d}",
                        "origin": {"postal_code": "10001", "country": "US"},
                        "destination": {"postal_code": "94105", "country": "US"},
                        "promised_delivery_date": (self.now() + timedelta(days=4)).date()
                        .isoformat(), "label_created_at": self.now().isoformat()}
            await self._one(session, kind, "PUT", f"/v1/orders/so-{number}", order)
            await self._one(session, kind, "PUT", f"/v1/shipments/ss-{number}", shipment)
            return
        await self._one(session, kind, method, path, body)
        if kind == "scan twice":
            await self._one(session, kind, method, path, body)

    async def _one(self, session: aiohttp.ClientSession, kind: str, method: str, path: str,
                   body: Any) -> None:
        started = time.perf_counter()
        try:
            async with session.request(method, self.base + path, json=body,
                                       headers=self.headers) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return
        elapsed = (time.perf_counter() - started) * 1000
        self.latencies.append(elapsed)
        self.by_kind.setdefault(kind, []).append(elapsed)
        self.statuses[str(status)] += 1
        if status >= 500 or (status >= 400 and not (method == "GET" and status == 404)):
            self.errors[f"HTTP {status}"] += 1


def _env(db_url: str, queue: str, twilio: str, smtp_port: int, anchor: float) -> dict[str, str]:
    return {
        **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url,
        "REDIS_URL": redis_url(), "PARCELCAST_QUEUE_NAME": queue,
        "EMAIL_TRANSPORT": "smtp", "SMTP_PORT": str(smtp_port), "SMS_TRANSPORT": "twilio",
        "TWILIO_BASE_URL": twilio, "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN, "PUBLIC_BASE_URL": "https://track.example",
        "SMS_PER_SECOND": "500", "EMAIL_PER_SECOND": "500", "PARCELCAST_LOG_LEVEL": "WARNING",
        "PARCELCAST_CLOCK_START": CLOCK_START.isoformat(),
        "PARCELCAST_CLOCK_ANCHOR": repr(anchor), "PARCELCAST_CLOCK_SPEED": "1",
        "RECALIBRATE_EVERY_HOURS": "0", "SWEEP_INTERVAL_S": "10",
    }


async def _wait_http(url: str, process: subprocess.Popen[bytes], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited")
            try:
                async with session.get(url) as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never answered")
            await asyncio.sleep(0.2)


def _slope_mb_per_min(series: list[tuple[float, float]]) -> float:
    """Least-squares slope over the second half of the samples (after warm-up)."""
    half = series[len(series) // 2:]
    if len(half) < 3:
        return 0.0
    t = np.array([s[0] for s in half]) / 60
    y = np.array([s[1] for s in half])
    return float(np.polyfit(t, y, 1)[0])


async def _restarts(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/metrics") as answer:
        text = await answer.text()
    found = re.findall(r'^parcelcast_worker_loop_restarts_total{loop="([^"]+)"} ([0-9.e+]+)$',
                       text, re.MULTILINE)
    return {loop: float(value) for loop, value in found}


@dataclass
class Stack:
    """The processes of a running stack, and what a driver needs to talk to it."""

    api_url: str
    key: str
    db_url: str
    anchor: float
    standins: Standins
    processes: dict[str, subprocess.Popen[bytes]]
    health_ports: list[int]


@contextlib.asynccontextmanager
async def running_stack(name: str, workers: int, log_dir: Path,
                        env: dict[str, str] | None = None) -> AsyncIterator[Stack]:
    """`parcelcast serve` and `workers` × `parcelcast worker` (each with its health endpoint)
    on a scratch database with a champion model, the stand-ins as their own processes, and
    Redis; every process on one clock that starts at CLOCK_START and runs at real speed."""
    model = await asyncio.to_thread(small_model)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    async with standin_processes() as standins, ScratchDatabase() as db:
        key = await db.admin_key()
        conn = await connect(db.url)  # with the service's JSON codecs
        await install_champion(conn, model, CLOCK_START)
        await conn.close()
        anchor = time.time()
        base = {**_env(db.url, f"parcelcast:{name}:{uuid.uuid4().hex[:8]}",
                       standins.twilio_url, standins.smtp_port, anchor), **(env or {})}
        api_port, health_ports = free_port(), [free_port() for _ in range(workers)]
        try:
            with (log_dir / "api.log").open("ab") as log:
                processes["api"] = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "serve", "--port", str(api_port)],
                    env=base, stdout=log, stderr=subprocess.STDOUT)
            for n, port in enumerate(health_ports, 1):
                with (log_dir / f"worker{n}.log").open("ab") as log:
                    processes[f"worker{n}"] = subprocess.Popen(
                        [sys.executable, "-m", "service.cli", "worker"],
                        env={**base, "WORKER_HEALTH_PORT": str(port)}, stdout=log,
                        stderr=subprocess.STDOUT)
            await _wait_http(f"http://127.0.0.1:{api_port}/readyz", processes["api"])
            for n, port in enumerate(health_ports, 1):
                await _wait_http(f"http://127.0.0.1:{port}/healthz", processes[f"worker{n}"])
            yield Stack(f"http://127.0.0.1:{api_port}", key, db.url, anchor, standins,
                        processes, health_ports)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()


async def run(minutes: float, rate: float, log_dir: Path) -> dict[str, Any]:
    async with running_stack("soak", 2, log_dir) as stack:
        processes, standins = stack.processes, stack.standins
        traffic = Traffic(stack.api_url, {"Authorization": f"Bearer {stack.key}"}, stack.anchor)
        rss: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
        depth: list[tuple[float, int]] = []
        outcome = await _drive(traffic, processes, rss, depth, stack.db_url, minutes, rate)
        drained_s = await _drain(stack.db_url)
        sms = await _http("GET", f"{standins.twilio_url}/_stats")
        email = await _http("GET", f"{standins.smtp_control}/_stats")
        conn = await asyncpg.connect(stack.db_url)
        try:
            end = dict(await conn.fetchrow(
                """SELECT (SELECT count(*) FROM work_items) AS work_left,
                          (SELECT count(*) FROM failed_work) AS quarantined,
                          (SELECT count(*) FROM notifications WHERE state = 'sent') AS sent,
                          (SELECT count(*) FROM notifications
                           WHERE state IN ('dead', 'failed')) AS dead_or_failed,
                          (SELECT count(*) FROM tracking_events) AS events_stored,
                          (SELECT count(*) FROM shipment_etas) AS etas"""))
        finally:
            await conn.close()
        restarts = {f"worker{n}": await _restarts(port)
                    for n, port in enumerate(stack.health_ports, 1)}
    return {**outcome, "drained_after_traffic_s": round(drained_s, 1), **end,
            "stand_ins": {"sms": sms, "email": email}, "loop_restarts": restarts,
            "rss_mb": {name: [(round(t), round(v, 1)) for t, v in series]
                       for name, series in rss.items()},
            "queue_depth": depth}


async def _drive(traffic: Traffic, processes: dict[str, subprocess.Popen[bytes]],
                 rss: dict[str, list[tuple[float, float]]], depth: list[tuple[float, int]],
                 db_url: str, minutes: float, rate: float) -> dict[str, Any]:
    """Start requests on a fixed schedule for `minutes`, sampling RSS meanwhile."""
    duration = minutes * 60
    gate = asyncio.Semaphore(256)
    tasks: set[asyncio.Task[None]] = set()
    conn = await asyncpg.connect(db_url)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        next_sample = 0.0
        sent = 0
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_sample:
                for name, process in processes.items():
                    rss[name].append((elapsed, rss_mb(process.pid)))
                depth.append((round(elapsed), int(await conn.fetchval(
                    "SELECT count(*) FROM work_items"))))
                next_sample += SAMPLE_EVERY_S
            due = int(elapsed * rate)
            while sent < due:
                sent += 1
                kind = traffic.rng.choices(ORDER_KINDS, WEIGHTS)[0]
                planned = traffic.request(kind)
                if gate.locked():
                    traffic.late_starts += 1

                async def go(kind: str = kind, planned: tuple[str, str, Any] = planned) -> None:
                    async with gate:
                        await traffic.send(session, kind, *planned)

                task = asyncio.create_task(go())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.gather(*tasks)
        for name, process in processes.items():
            rss[name].append((time.monotonic() - started, rss_mb(process.pid)))
    await conn.close()
    latencies = np.array(traffic.latencies)
    total = len(traffic.latencies) + sum(v for k, v in traffic.errors.items()
                                         if not k.startswith("HTTP"))
    errors = sum(traffic.errors.values())
    return {
        "minutes": minutes, "rate_per_s": rate, "requests": total,
        "errors": dict(traffic.errors), "error_rate": errors / total if total else 0.0,
        "statuses": dict(traffic.statuses), "late_starts": traffic.late_starts,
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "max_ms": round(float(latencies.max()), 1),
        "p99_ms_by_kind": {k: round(float(np.percentile(v, 99)), 1)
                           for k, v in traffic.by_kind.items()},
        "rss_slope_mb_per_min": {name: round(_slope_mb_per_min(series), 2)
                                 for name, series in rss.items()},
        "rss_first_last_mb": {name: (round(series[0][1]), round(series[-1][1]))
                              for name, series in rss.items()},
    }


async def _drain(db_url: str, limit_s: float = 300) -> float:
    """Seconds until no work is left after the traffic stopped."""
    started = time.monotonic()
    conn = await asyncpg.connect(db_url)
    try:
        while await conn.fetchval("SELECT count(*) FROM work_items") > 0:
            if time.monotonic() - started > limit_s:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    return time.monotonic() - started


def rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    api_slope = result["rss_slope_mb_per_min"]["api"]
    worker_slopes = [v for k, v in result["rss_slope_mb_per_min"].items() if k != "api"]
    sms, email = result["stand_ins"]["sms"], result["stand_ins"]["email"]
    duplicates = sms["duplicates"] + email["duplicates"]
    peak = {name: max(v for _, v in series) for name, series in result["rss_mb"].items()}
    return [
        {"figure": f"soak {result['minutes']:g} min at {result['rate_per_s']:g} req/s: "
                   "error rate", "measured": f"{result['error_rate']:.4%}", "floor": None,
         "ratio": None, "target": "0 (no 5xx)", "met": result["error_rate"] == 0},
        {"figure": "soak: API latency p50 / p99 / max (ms)",
         "measured": f"{result['p50_ms']} / {result['p99_ms']} / {result['max_ms']}",
         "floor": None, "ratio": None, "target": "p99 ≤ 50 ms", "met": result["p99_ms"] <= 50},
        {"figure": "soak: RSS slope over the second half (MB/min): API / workers",
         "measured": f"{api_slope} / {' / '.join(str(s) for s in worker_slopes)}",
         "floor": None, "ratio": None, "target": "flat (|slope| < 1 MB/min)",
         "met": all(abs(s) < 1 for s in [api_slope, *worker_slopes])},
        {"figure": "soak: peak RSS (MB): API / workers",
         "measured": " / ".join(f"{v:.0f}" for v in peak.values()), "floor": None,
         "ratio": None, "target": "≤ 300 MB each", "met": all(v <= 300 for v in peak.values())},
        {"figure": "soak: messages at the stand-ins / duplicates; work left; quarantined",
         "measured": f"{sms['accepted'] + email['accepted']} / {duplicates}; "
                     f"{result['work_left']}; {result['quarantined']}", "floor": None,
         "ratio": None, "target": "0 duplicates, 0 left, 0 quarantined",
         "met": duplicates == 0 and result["work_left"] == 0 and result["quarantined"] == 0},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/parcelcast-soak"))
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args.minutes, args.rate, args.logs))
    rows = rows_of(result)
    write_result("soak", rows, {"args": {k: str(v) for k, v in vars(args).items()},
                                "result": result, "load_average_at_end": os.getloadavg()})
    print(markdown(rows))
    print(json.dumps({k: v for k, v in result.items() if k not in ("rss_mb", "queue_depth")},
                     indent=2, default=str))


if __name__ == "__main__":
    main()
