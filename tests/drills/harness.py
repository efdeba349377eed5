"""What every drill shares: a shop's traffic, a client that retries like a real sender, worker
processes with their health endpoints, waiting for the system to settle, and the checks that
every drill makes (events stored once, statuses and ETAs right, no work left, every message
at the provider once)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from service.clock import Clock
from service.eta.runtime import stage_of
from service.settings import Settings
from service.store.embedded import free_port
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.servers import start_worker, stop_worker, worker_env

FINAL = ("in_transit", "out_for_delivery", "delivered")
SCAN_TIMES = {"in_transit": "2026-11-02T20:00:00Z", "out_for_delivery": "2026-11-03T15:00:00Z",
              "delivered": "2026-11-03T19:00:00Z"}
# What each final status must have told the customer (notification rules as migrated).
LAST_WORD = {"in_transit": {("shipped", "email")},
             "out_for_delivery": {("out_for_delivery", "email"), ("out_for_delivery", "sms")},
             "delivered": {("delivered", "email"), ("delivered", "sms")}}
# Worker settings for drills: lost work is handed over after 5 s, an abandoned send is
# taken over after 5 s (longer than any send takes here), sweeps every 2 s.
DRILL_WORKER_ENV = {"PARCELCAST_STALE_AFTER_S": "5", "SEND_LEASE_S": "5",
                    "SWEEP_INTERVAL_S": "2", "RECALIBRATE_EVERY_HOURS": "0",
                    "PARCELCAST_LOG_LEVEL": "INFO"}


@dataclass(frozen=True)
class Shop:
    """`n` orders, each with a shipment that gets up to three scans: shipments end in
    transit, out for delivery or delivered, by turns."""

    n: int
    tag: str = "D"

    def ids(self) -> range:
        return range(self.n)

    def order_id(self, i: int) -> str:
        return f"{self.tag.lower()}o-{i}"

    def shipment_id(self, i: int) -> str:
        return f"{self.tag.lower()}s-{i}"

    def tracking(self, i: int) -> str:
        return f"1Z{self.tag}{i:06d}"

    def final(self, i: int) -> str:
        return FINAL[i % len(FINAL)]

    def order(self, i: int) -> dict[str, Any]:
        return order(customer={"name": f"Customer {i}", "email": f"c{i}@example.com",
                               "phone": f"+1415555{i:04d}", "locale": "en",
                               "timezone": "America/Los_Angeles"})

    def shipment(self, i: int) -> dict[str, Any]:
        return shipment(self.order_id(i), self.tracking(i))

    def scans(self, i: int) -> list[dict[str, Any]]:
        statuses = FINAL[:FINAL.index(self.final(i)) + 1]
        return [event(s, SCAN_TIMES[s], tracking_number=self.tracking(i)) for s in statuses]

    def wave(self, status: str, ids: range | None = None) -> list[dict[str, Any]]:
        """The scans of one status for every shipment (of `ids`) that gets it."""
        return [scan for i in (ids or self.ids()) for scan in self.scans(i)
                if scan["status"] == status]


@dataclass
class Sender:
    """A client that sends each request until it is accepted (a 5xx or a dropped connection
    is sent again after a short pause), as carriers and shops retry."""

    client: TestClient
    headers: dict[str, str]
    deadline_s: float = 180.0
    requests: int = 0
    attempts: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    events_sent: int = 0
    events_confirmed: int = 0  # accepted, or a duplicate of an accepted one

    async def send(self, method: str, path: str, body: Any) -> dict[str, Any]:
        self.requests += 1
        deadline = time.monotonic() + self.deadline_s
        while True:
            self.attempts += 1
            try:
                async with self.client.request(method, path, json=body,
                                               headers=self.headers) as answer:
                    payload = await answer.json(content_type=None)
                    if answer.status < 300:
                        return payload if isinstance(payload, dict) else {}
                    if answer.status < 500:
                        raise AssertionError(f"{method} {path}: {answer.status} {payload}")
                    self.refused[str(answer.status)] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.refused[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} never accepted: {dict(self.refused)}")
            await asyncio.sleep(0.2)

    async def events(self, scans: list[dict[str, Any]], concurrency: int = 8,
                     pace: float = 0.0) -> None:
        """Each scan in its own request (so concurrent ones are merged by the service), a new
        one every `pace` seconds (0: as fast as `concurrency` allows)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(number: int, scan: dict[str, Any]) -> None:
            await asyncio.sleep(number * pace)
            async with gate:
                answer = await self.send("POST", "/v1/tracking-events", scan)
            self.events_confirmed += answer["accepted"] + answer["duplicates"]

        self.events_sent += len(scans)
        await asyncio.gather(*(one(n, scan) for n, scan in enumerate(scans)))

    async def batch(self, scans: list[dict[str, Any]]) -> None:
        """All the scans in one request (one statement: their refreshes are handed out
        together)."""
        self.events_sent += len(scans)
        answer = await self.send("POST", "/v1/tracking-events", scans)
        self.events_confirmed += answer["accepted"] + answer["duplicates"]

    async def setup(self, shop: Shop) -> None:
        for i in shop.ids():
            await self.send("PUT", f"/v1/orders/{shop.order_id(i)}", shop.order(i))
            await self.send("PUT", f"/v1/shipments/{shop.shipment_id(i)}", shop.shipment(i))


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    health_port: int
    log: Path

    async def health(self) -> tuple[int, dict[str, Any]]:
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                f"http://127.0.0.1:{self.health_port}/healthz") as answer:
            return answer.status, await answer.json()

    async def metric(self, name: str) -> dict[str, float]:
        """One metric's samples by their first label's value."""
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                f"http://127.0.0.1:{self.health_port}/metrics") as answer:
            text = await answer.text()
        found = re.findall(rf'^{name}{{\w+="([^"]+)"}} ([0-9.e+]+)$', text, re.MULTILINE)
        return {label: float(value) for label, value in found}

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_worker(self.process)


def start_workers(settings: Settings, clock: Clock, folder: Path, count: int, **env: str
                  ) -> list[WorkerProcess]:
    workers = []
    for _ in range(count):
        port = free_port()
        log = folder / f"worker-{port}.log"
        extra = {**DRILL_WORKER_ENV, "WORKER_HEALTH_PORT": str(port), **env}
        workers.append(WorkerProcess(start_worker(worker_env(settings, clock, **extra), log),
                                     port, log))
    return workers


async def until(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Wait until `probe()` is true; the seconds it took (a generous deadline, not a target)."""
    started = time.monotonic()
    while True:
        try:
            if await probe():
                return time.monotonic() - started
        except (OSError, aiohttp.ClientError, asyncpg.PostgresError, asyncpg.InterfaceError,
                TimeoutError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def healthy(workers: list[WorkerProcess], timeout: float = 180) -> float:
    async def all_up() -> bool:
        for worker in workers:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited; see {worker.log}")
            status, body = await worker.health()
            if status != 200 or not all(loop["up"] for loop in body["loops"].values()):
                return False
        return True

    return await until(all_up, timeout, "workers healthy")


async def settled(connect: Callable[[], Awaitable[asyncpg.Connection]], timeout: float = 300,
                  *, allowed_work: int = 0) -> float:
    """Wait until no work is left (but `allowed_work` items scheduled for later) and no
    message is waiting or being sent.

    The deadline is generous, not a target: a message may rightly wait out the send retry
    schedule (workers.sending.send.RETRY_SCHEDULE: 5, 30, then 120 s, jittered, on the
    workers' real-speed clock), so a third try alone can take up to 144 s, more on a loaded
    machine (the killed-worker drill settled after 115 s at load 19.5)."""

    async def quiet() -> bool:
        conn = await connect()
        try:
            work = await conn.fetchval("SELECT count(*) FROM work_items")
            busy = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE state IN ('scheduled', 'sending')")
        finally:
            await conn.close()
        return bool(work <= allowed_work and busy == 0)

    try:
        return await until(quiet, timeout, "work settled")
    except AssertionError as exc:
        conn = await connect()
        try:  # what was left, to tell why
            work = [dict(r) for r in await conn.fetch("SELECT * FROM work_items LIMIT 20")]
            busy = [dict(r) for r in await conn.fetch(
                """SELECT id, shipment_id, moment, channel, state, attempts, due_at,
                          sending_since
                   FROM notifications WHERE state IN ('scheduled', 'sending') LIMIT 20""")]
        finally:
            await conn.close()
        raise AssertionError(f"{exc}; work items left: {work}; messages busy: {busy}") from None


async def restarts(workers: list[WorkerProcess]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for worker in workers:
        if worker.process.poll() is None:
            total.update(await worker.metric("parcelcast_worker_loop_restarts_total"))
    return dict(total)


async def check(conn: asyncpg.Connection, shop: Shop, sender: Sender, twilio: TwilioStandin,
                smtp: SmtpStandin, *, email_resends_allowed: bool = False,
                skip: frozenset[int] = frozenset(), timeout: float = 60) -> dict[str, Any]:
    """What every drill checks, as figures; `figures["problems"]` names what is wrong (the
    drill reports the figures, then asserts there are none). `skip`: shipments set aside on
    purpose.

    The outbox being empty does not mean the last job has finished everywhere (a job a
    killed worker held may still be re-run by arq), so the check is repeated until it finds
    no problem or `timeout` (a generous deadline) passes; `checked_after_s` says how long
    the problems took to clear."""
    started = time.monotonic()
    while True:
        figures = await _check_once(conn, shop, sender, twilio, smtp,
                                    email_resends_allowed=email_resends_allowed, skip=skip)
        if not figures["problems"] or time.monotonic() - started > timeout:
            figures["checked_after_s"] = round(time.monotonic() - started, 2)
            return figures
        await asyncio.sleep(0.5)


async def _check_once(conn: asyncpg.Connection, shop: Shop, sender: Sender,
                      twilio: TwilioStandin, smtp: SmtpStandin, *, email_resends_allowed: bool,
                      skip: frozenset[int]) -> dict[str, Any]:
    tracking = [shop.tracking(i) for i in shop.ids()]
    expected = {(s["tracking_number"], s["status"]) for i in shop.ids() for s in shop.scans(i)}
    stored = Counter((r["tracking_number"], r["status"]) for r in await conn.fetch(
        "SELECT tracking_number, status FROM tracking_events WHERE tracking_number = ANY($1)",
        tracking))
    lost = expected - set(stored)
    duplicated = sum(n - 1 for n in stored.values() if n > 1)

    rows = {r["shipment_id"]: r for r in await conn.fetch(
        """SELECT s.shipment_id, s.status, s.event_count, e.stage, e.model_version
           FROM shipments s LEFT JOIN shipment_etas e ON e.id = s.eta_id
           WHERE s.shipment_id = ANY($1)""", [shop.shipment_id(i) for i in shop.ids()])}
    wrong = []
    for i in shop.ids():
        if i in skip:
            continue
        row = rows[shop.shipment_id(i)]
        scans = shop.scans(i)
        want_stage = None if shop.final(i) == "delivered" else stage_of(scans)
        if (row["status"], row["event_count"]) != (shop.final(i), len(scans)) or (
                want_stage is not None and row["stage"] != want_stage):
            wrong.append((shop.shipment_id(i), row["status"], row["event_count"], row["stage"]))

    if wrong:  # each wrong shipment's ETA history, to tell why
        wrong = [*wrong, *[dict(r) for r in await conn.fetch(
            """SELECT e.shipment_id, e.id, e.stage, e.predicted_at, s.eta_id, s.derived_at
               FROM shipment_etas e JOIN shipments s USING (shipment_id)
               WHERE e.shipment_id = ANY($1) ORDER BY e.id""", [w[0] for w in wrong])]]
    quarantined = await conn.fetchval(
        "SELECT count(*) FROM failed_work WHERE subject_id = ANY($1)",
        [shop.shipment_id(i) for i in shop.ids() if i not in skip])
    notes = await conn.fetch(
        """SELECT id, shipment_id, moment, channel, state FROM notifications
           WHERE shipment_id = ANY($1)""", [shop.shipment_id(i) for i in shop.ids()])
    unfinished = [dict(n) for n in notes if n["state"] not in ("sent", "superseded")]
    told = {(n["shipment_id"], n["moment"], n["channel"]) for n in notes if n["state"] == "sent"}
    untold = [(shop.shipment_id(i), moment, channel) for i in shop.ids() if i not in skip
              for moment, channel in LAST_WORD[shop.final(i)]
              if (shop.shipment_id(i), moment, channel) not in told]
    if untold:  # what those shipments did get, to tell why
        untold_ids = sorted({u[0] for u in untold})
        untold = [*untold, *[dict(r) for r in await conn.fetch(
            """SELECT s.shipment_id, s.status, s.derived_at, s.event_count,
                      (SELECT array_agg(moment || ':' || channel || ':' || state)
                       FROM notifications n WHERE n.shipment_id = s.shipment_id) AS told
               FROM shipments s WHERE s.shipment_id = ANY($1)""", untold_ids)]]
    sent = {f"n{n['id']}": n["channel"] for n in notes if n["state"] == "sent"}
    sms_marks = Counter(re.search(r"notification_id=(n\d+)", m["status_callback"] or "")[1]
                        for m in twilio.state.messages)
    email_marks = Counter(m["notification_id"] for m in smtp.state.messages)
    sms_sent = {k for k, ch in sent.items() if ch == "sms"}
    email_sent = {k for k, ch in sent.items() if ch == "email"}
    figures = {
        "events_sent": sender.events_sent, "events_confirmed": sender.events_confirmed,
        "events_stored": len(stored), "events_lost": len(lost), "events_duplicated": duplicated,
        "requests": sender.requests, "attempts": sender.attempts,
        "refused_attempts": dict(sender.refused),
        "shipments_wrong": len(wrong), "work_left": await conn.fetchval(
            "SELECT count(*) FROM work_items"),
        "sms_recorded_sent": len(sms_sent), "sms_at_provider": sum(sms_marks.values()),
        "sms_missing": len(sms_sent - set(sms_marks)),
        "sms_twice": sum(n - 1 for n in sms_marks.values() if n > 1),
        "sms_unrecorded_at_provider": len(set(sms_marks) - sms_sent),
        "email_recorded_sent": len(email_sent), "email_at_provider": sum(email_marks.values()),
        "email_missing": len(email_sent - set(email_marks)),
        "email_unrecorded_at_provider": len(set(email_marks) - email_sent),
        "email_resent_same_message_id": sum(n - 1 for n in email_marks.values() if n > 1),
        "messages_unfinished": len(unfinished), "last_word_untold": len(untold),
        "quarantined": quarantined,
    }
    problems = {
        "events lost or stored twice": (sorted(lost), duplicated) if lost or duplicated else None,
        "events not confirmed": sender.events_sent - sender.events_confirmed or None,
        "shipments with a wrong status or ETA": wrong or None,
        "healthy work quarantined": quarantined or None,
        "messages not finished": unfinished or None,
        "final milestones never told": untold or None,
        "sms missing or twice": {k: figures[k] for k in (
            "sms_missing", "sms_twice", "sms_unrecorded_at_provider")}
        if figures["sms_missing"] or figures["sms_twice"]
        or figures["sms_unrecorded_at_provider"] or twilio.state.duplicates else None,
        "e-mail missing": {k: figures[k] for k in ("email_missing",
                                                   "email_unrecorded_at_provider")}
        if figures["email_missing"] or figures["email_unrecorded_at_provider"] else None,
        "e-mail sent twice": figures["email_resent_same_message_id"]
        if figures["email_resent_same_message_id"] and not email_resends_allowed else None,
    }
    figures["problems"] = {k: v for k, v in problems.items() if v is not None}
    return figures
