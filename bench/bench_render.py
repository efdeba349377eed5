"""Notifications benchmark: render + hand to the provider stand-ins, against their raw floor.

Starts both stand-ins as subprocesses on free loopback ports, then in the same run:
  1. render cost: e-mail (subject + HTML + CSS inlining + text + MIME) and SMS, in µs;
  2. floor: the same number of pre-rendered messages posted straight to the stand-ins
     (raw aiohttp form POSTs; raw aiosmtplib on pooled connections), concurrency 50;
  3. end to end: render + real senders (Twilio SDK async client, pooled SMTP sender),
     concurrency 50, half e-mail and half SMS across all moments and locales;
and reads the stand-ins' duplicate counters (must be 0).
Writes bench/results/render.json and prints a markdown table.

Run: .venv/bin/python -m bench.bench_render [--messages 4000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from aiosmtplib import SMTP

from standins.common import free_port
from standins.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from workers.render.email_message import build_email, wire_bytes
from workers.render.moments import MOMENTS, SHIPPED_LOCALES
from workers.render.render import Renderer
from workers.render.samples import SAMPLE_NOW, sample_context
from workers.senders import SmsMessage, SmtpEmailSender, SmtpSettings, TwilioSmsSender

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "render.json"
FROM_NUMBER = "+15005550006"
SMTP_POOL = 8
CALLBACK = "https://hooks.example/twilio/status"


def _job(i: int) -> tuple[str, str, dict[str, Any], str]:
    moment = MOMENTS[i % len(MOMENTS)]
    locale = SHIPPED_LOCALES[(i // len(MOMENTS)) % len(SHIPPED_LOCALES)]
    ctx = sample_context(moment, order_id=f"#{100000 + i}")
    return moment, locale, ctx, f"ntf-{i:07d}"


def _email(renderer: Renderer, i: int) -> EmailMessage:
    moment, locale, ctx, notification_id = _job(i)
    rendered = renderer.render_email(moment, locale, ctx)
    return build_email(rendered, notification_id=notification_id,
                       from_addr="Northwind Coffee <orders@northwind.example>",
                       to_addr=f"customer{i}@example.com", unsubscribe_url=ctx["unsubscribe_url"],
                       now=SAMPLE_NOW, message_id_domain="northwind.example")


def _sms(renderer: Renderer, i: int) -> SmsMessage:
    moment, locale, ctx, notification_id = _job(i)
    body = renderer.render_sms(moment, locale, ctx).body
    return SmsMessage(notification_id, f"+1415555{i % 10000:04d}", body, CALLBACK)


def _measure_render(renderer: Renderer, n: int) -> dict[str, float]:
    for i in range(200):  # warm the template and date caches, as a running worker would be
        _email(renderer, i)
        _sms(renderer, i)
    started = time.perf_counter()
    for i in range(n):
        wire_bytes(_email(renderer, i))  # the bytes the senders send
    email_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i in range(n):
        _sms(renderer, i)
    sms_us = (time.perf_counter() - started) / n * 1e6
    return {"email_render_us": round(email_us, 1), "sms_render_us": round(sms_us, 1)}


async def _run_pool(n: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> float:
    """Run work(0..n-1) with `concurrency` workers; returns elapsed seconds."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await work(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _floor(renderer: Renderer, n: int, concurrency: int, twilio_url: str,
                 smtp_port: int) -> float:
    """Pre-rendered messages posted straight to the stand-ins: the most they can take."""
    auth = base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode()).decode()
    url = f"{twilio_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    forms, mails = {}, {}
    for i in range(n):
        if i % 2:
            sms = _sms(renderer, i)
            forms[i] = {"To": sms.to, "From": FROM_NUMBER, "Body": sms.body,
                        "StatusCallback": f"{CALLBACK}?notification_id=floor-{i}"}
        else:
            msg = _email(renderer, i)
            del msg["X-Parcelcast-Notification-Id"]
            msg["X-Parcelcast-Notification-Id"] = f"floor-{i}"
            mails[i] = (msg["From"], [msg["To"]], msg.as_bytes())
    pool: asyncio.Queue[SMTP] = asyncio.Queue()
    for _ in range(SMTP_POOL):
        smtp = SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False)
        await smtp.connect()
        pool.put_nowait(smtp)
    async with aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"}) as http:
        async def work(i: int) -> None:
            if i in forms:
                async with http.post(url, data=forms[i]) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"floor SMS failed: {resp.status}")
                    await resp.read()
            else:
                smtp = await pool.get()
                try:
                    sender, recipients, data = mails[i]
                    await smtp.sendmail(sender, recipients, data)
                finally:
                    pool.put_nowait(smtp)
        elapsed = await _run_pool(n, concurrency, work)
    while not pool.empty():
        await pool.get_nowait().quit()
    return elapsed


async def _end_to_end(renderer: Renderer, n: int, concurrency: int, twilio_url: str,
                      smtp_port: int) -> float:
    twilio = TwilioSmsSender(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, from_number=FROM_NUMBER,
                             base_url=twilio_url)
    smtp = SmtpEmailSender(SmtpSettings("127.0.0.1", smtp_port, start_tls=False),
                           pool_size=SMTP_POOL)

    async def work(i: int) -> None:
        if i % 2:
            await twilio.send(_sms(renderer, i))
        else:
            await smtp.send(_email(renderer, i))

    try:
        return await _run_pool(n, concurrency, work)
    finally:
        await twilio.aclose()
        await smtp.aclose()


async def _http(method: str, url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.request(method, url) as resp:
        return await resp.json()


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 60.0) -> None:
    """Until `url` answers (a stand-in, or a worker's health endpoint)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            await _http("GET", url)
            return
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url} within {within:g}s")


@dataclass(frozen=True)
class Standins:
    twilio_url: str
    smtp_port: int
    smtp_control: str


@contextlib.asynccontextmanager
async def standin_processes() -> AsyncIterator[Standins]:
    """Both stand-ins as their own processes on free loopback ports, ready to use."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tw_port, smtp_port, smtp_http = free_port(), free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "standins.twilio_server", "--port", str(tw_port)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "standins.smtp_server", "--smtp-port",
                          str(smtp_port), "--http-port", str(smtp_http)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    running = Standins(f"http://127.0.0.1:{tw_port}", smtp_port, f"http://127.0.0.1:{smtp_http}")
    try:
        await _wait_ready(f"{running.twilio_url}/_stats", procs[0])
        await _wait_ready(f"{running.smtp_control}/_stats", procs[1])
        yield running
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


async def run(n: int, concurrency: int) -> dict[str, Any]:
    """Run the whole benchmark; returns the results dict."""
    async with standin_processes() as standins:
        twilio_url, smtp_port = standins.twilio_url, standins.smtp_port
        smtp_ctl = standins.smtp_control
        renderer = Renderer()
        render = _measure_render(renderer, min(n, 2000))
        floor_s = await _floor(renderer, n, concurrency, twilio_url, smtp_port)
        floor_dups = ((await _http("GET", f"{twilio_url}/_stats"))["duplicates"]
                      + (await _http("GET", f"{smtp_ctl}/_stats"))["duplicates"])
        await _http("POST", f"{twilio_url}/_reset")
        await _http("POST", f"{smtp_ctl}/_reset")
        e2e_s = await _end_to_end(renderer, n, concurrency, twilio_url, smtp_port)
        tw_stats = await _http("GET", f"{twilio_url}/_stats")
        smtp_stats = await _http("GET", f"{smtp_ctl}/_stats")
    accepted = tw_stats["accepted"] + smtp_stats["accepted"]
    e2e_rate, floor_rate = n / e2e_s, n / floor_s
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),  # noqa: DTZ005 - a report stamp, not domain time
        "messages": n, "concurrency": concurrency, "smtp_pool": SMTP_POOL,
        "cpu_count": os.cpu_count(),
        **render,
        "end_to_end_msgs_per_s": round(e2e_rate, 1),
        "floor_msgs_per_s": round(floor_rate, 1),
        "ratio_to_floor": round(e2e_rate / floor_rate, 3),
        "accepted": accepted, "sms_accepted": tw_stats["accepted"],
        "email_accepted": smtp_stats["accepted"],
        "duplicates": tw_stats["duplicates"] + smtp_stats["duplicates"],
        "floor_duplicates": floor_dups,
        "target_msgs_per_s": 300,
        "meets_target": e2e_rate >= 300 and accepted == n
        and tw_stats["duplicates"] + smtp_stats["duplicates"] == 0,
    }


def _table(r: dict[str, Any]) -> str:
    rows = [
        ("render cost, e-mail (µs/msg)", r["email_render_us"]),
        ("render cost, SMS (µs/msg)", r["sms_render_us"]),
        ("end to end (msgs/s)", r["end_to_end_msgs_per_s"]),
        ("stand-in floor, pre-rendered raw clients (msgs/s)", r["floor_msgs_per_s"]),
        ("ratio to floor", r["ratio_to_floor"]),
        ("accepted (SMS + e-mail)", f"{r['sms_accepted']} + {r['email_accepted']}"),
        ("duplicates at the stand-ins", r["duplicates"]),
        ("target ≥ 300 msgs/s, 0 duplicates", "met" if r["meets_target"] else "NOT met"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="notification rendering + sending benchmark")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(run(args.messages, args.concurrency))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(_table(results))


if __name__ == "__main__":
    main()
