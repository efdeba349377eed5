"""Notifications through the real pipeline: scheduled rows in PostgreSQL -> relay -> two
`parcelcast worker` processes (claim, render, send, record) -> the Twilio and SMTP stand-ins.

    python -m bench.bench_notify [--messages 4000]

The floor is the stand-ins' own capacity in the same run: the same number of pre-rendered
messages posted straight to them (bench.bench_render's floor).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.bench_render import _floor, _http, _wait_ready, standin_processes
from bench.common import ScratchDatabase, markdown, write_result
from standins.common import free_port
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.servers import redis_url
from workers.render import Renderer

ROOT = Path(__file__).resolve().parents[1]
MOMENTS = ("out_for_delivery", "delivered", "shipped", "predicted_delay")
LOCALES = ("en", "es", "de", "pt-BR")


async def schedule(database_url: str, messages: int) -> None:
    """`messages` due notifications (half e-mail, half SMS) with their work items."""
    now = datetime.now(UTC)
    shipments = messages // 2
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table("orders", columns=[
            "order_id", "placed_at", "customer_name", "customer_email", "customer_phone",
            "locale", "timezone", "email_consent", "sms_consent", "created_at", "updated_at"],
            records=[(f"o{i}", now, f"Customer {i}", f"c{i}@example.com",
                      f"+1415555{i % 10000:04d}", LOCALES[i % 4], "America/Chicago", True, True,
                      now, now) for i in range(shipments)])
        await conn.copy_records_to_table("shipments", columns=[
            "shipment_id", "order_id", "carrier", "service_level", "tracking_number",
            "destination_postal_code", "destination_country", "status", "label_created_at",
            "created_at", "updated_at"],
            records=[(f"s{i}", f"o{i}", "ups", "ground", f"1Z{i:08d}", "60601", "US",
                      "out_for_delivery", now, now, now) for i in range(shipments)])
        async with conn.transaction():
            ids = await conn.fetch(
                """INSERT INTO notifications (shipment_id, order_id, moment, channel, recipient,
                       locale, due_at, created_at, updated_at)
                   SELECT 's' || i, 'o' || i, ($2::text[])[1 + i % 4], ch,
                          CASE ch WHEN 'email' THEN 'c' || i || '@example.com'
                                  ELSE '+1415555' || lpad((i % 10000)::text, 4, '0') END,
                          ($3::text[])[1 + i % 4], $4, $4, $4
                   FROM generate_series(0, $1 - 1) AS i, unnest('{email,sms}'::text[]) AS ch
                   RETURNING id""", shipments, list(MOMENTS), list(LOCALES), now)
            await conn.execute(
                """INSERT INTO work_items (kind, subject_id, run_after, created_at)
                   SELECT 'send_notification', id::text, $2, $2 FROM unnest($1::bigint[]) id""",
                [r["id"] for r in ids], now)
            await conn.execute("SELECT pg_notify('parcelcast_work', '')")
    finally:
        await conn.close()


async def run(messages: int) -> list[dict[str, Any]]:
    workers: list[subprocess.Popen[bytes]] = []
    async with standin_processes() as standins:
        twilio, smtp_ctl = standins.twilio_url, standins.smtp_control
        try:
            floor_s = await _floor(Renderer(), messages, 50, twilio, standins.smtp_port)
            await _http("POST", f"{twilio}/_reset")
            await _http("POST", f"{smtp_ctl}/_reset")
            async with ScratchDatabase() as db:
                worker_env = {
                    **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db.url,
                    "REDIS_URL": redis_url(),
                    "PARCELCAST_QUEUE_NAME": f"parcelcast:bench:{os.getpid()}",
                    "EMAIL_TRANSPORT": "smtp", "SMTP_PORT": str(standins.smtp_port),
                    "SMS_TRANSPORT": "twilio", "TWILIO_BASE_URL": twilio,
                    "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
                    "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
                    "PUBLIC_BASE_URL": "https://track.example", "SMS_PER_SECOND": "5000",
                    "EMAIL_PER_SECOND": "5000", "PARCELCAST_LOG_LEVEL": "WARNING",
                }
                health_ports = [free_port() for _ in range(2)]
                workers = [subprocess.Popen([sys.executable, "-m", "service.cli", "worker"],
                                            env={**worker_env,
                                                 "WORKER_HEALTH_PORT": str(port)})
                           for port in health_ports]
                # Both workers up (started, migrations checked, templates compiled: their
                # health endpoint answers) and idle; a fixed wait measured the start-up of a
                # busy machine's workers as sending time.
                for process, port in zip(workers, health_ports, strict=True):
                    await _wait_ready(f"http://127.0.0.1:{port}/healthz", process, within=120)
                await asyncio.sleep(1)
                conn = await asyncpg.connect(db.url)
                started = time.perf_counter()
                await schedule(db.url, messages)
                while await conn.fetchval(
                        "SELECT count(*) FROM notifications WHERE state <> 'sent'") > 0:
                    if time.perf_counter() - started > 600:
                        raise RuntimeError("notifications were not all sent within 10 minutes")
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                await conn.close()
            sms = await _http("GET", f"{twilio}/_stats")
            email = await _http("GET", f"{smtp_ctl}/_stats")
        finally:
            for process in workers:
                process.terminate()
            for process in workers:
                process.wait(60)
    rate, floor = messages / elapsed, messages / floor_s
    duplicates = sms["duplicates"] + email["duplicates"]
    delivered = sms["accepted"] + email["accepted"]
    return [{
        "figure": "notifications through 2 workers: DB claim, render, send, record (msgs/s)",
        "measured": round(rate), "floor": f"stand-ins raw {round(floor)} msgs/s",
        "ratio": rate / floor, "target": "≥ 300/s, 0 duplicates",
        "met": rate >= 300 and duplicates == 0 and delivered == messages,
    }, {
        "figure": "messages counted at the stand-ins: accepted / duplicates",
        "measured": f"{delivered} / {duplicates}", "floor": None, "ratio": None,
        "target": f"{messages} / 0", "met": delivered == messages and duplicates == 0,
    }]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000)
    args = parser.parse_args()
    rows = asyncio.run(run(args.messages))
    write_result("notify", rows, {"args": vars(args)})
    print(markdown(rows))


if __name__ == "__main__":
    main()
