"""A worker process killed mid-send: the message is neither lost nor sent twice.

SMS: Twilio can be asked (list by recipient), so the next attempt finds the message the
dead worker handed over and records it instead of sending again. E-mail: SMTP gives no
way to ask, so the choice is at-least-once inside that window, re-sent with the same
Message-ID (which mail clients collapse) — tested here as the documented behaviour.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.clock import ManualClock
from service.settings import Settings
from standins.smtp_server import SmtpStandin
from standins.twilio_server import TwilioStandin
from tests.builders import event, order, shipment
from tests.notifying import sms_for, wired
from tests.servers import start_worker, stop_worker, worker_env
from tests.test_notifications import NOON_LA, PHONE


async def _wait_for(probe, worker: subprocess.Popen[bytes], log: Path,  # type: ignore[no-untyped-def]
                    timeout: float = 180.0) -> None:
    """Wait until `probe()` is true. The deadline is generous, not a target: it includes
    the worker process starting (importing its libraries takes seconds of CPU, much longer
    on a loaded machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}); see {log}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition never became true within {timeout:.0f}s")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_worker_killed_between_send_and_record(
    aiohttp_client, settings: Settings, clock: ManualClock, pool: asyncpg.Pool,  # type: ignore[no-untyped-def]
    admin: dict[str, str], twilio: TwilioStandin, smtp: SmtpStandin, tmp_path: Path, channel: str,
) -> None:
    settings = wired(settings, twilio, smtp)
    clock.set(NOON_LA)
    api: TestClient = await aiohttp_client(create_app(settings, clock))
    consent = {"email": channel == "email", "sms": channel == "sms"}
    await api.put("/v1/orders/o-1", json=order(consent=consent), headers=admin)
    await api.put("/v1/shipments/s-1", json=shipment(), headers=admin)
    await api.post("/v1/tracking-events", json=event("delivered", "2026-11-03T19:00:00Z"),
                   headers=admin)
    if channel == "sms":
        twilio.state.delay = 3
    else:
        smtp.state.delay = 3
    # Every worker of a deployment runs with the same settings: a job leases its work for
    # PARCELCAST_STALE_AFTER_S, so the lease the killed worker leaves lapses after 0.5 s.
    env = worker_env(settings, clock, PARCELCAST_STALE_AFTER_S="0.5", SEND_LEASE_S="0.5")
    worker = start_worker(env, tmp_path / "worker.log")

    async def provider_has_it() -> bool:
        return bool(twilio.state.messages if channel == "sms" else smtp.state.messages)

    try:
        await _wait_for(provider_has_it, worker, tmp_path / "worker.log")
    finally:
        worker.send_signal(signal.SIGKILL)  # mid-send: the provider has it, we have no reply
        worker.wait(10)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT state FROM notifications") == "sending"
    twilio.state.delay = smtp.state.delay = 0
    # Meanwhile the order changes in a way its message shows (here the customer's name, as
    # an ETA moved by the next scans would): a fresh rendering would be other words, which
    # the provider's list does not hold; the dead worker's words are the ones asked for.
    renamed = order(consent=consent)
    renamed["customer"] = {**renamed["customer"], "name": "Augusta King"}
    assert (await api.put("/v1/orders/o-1", json=renamed, headers=admin)).status < 300
    # A new worker whose relay re-hands unfinished work after 0.5 s, and whose sends treat
    # a claim older than 0.5 s as abandoned.
    worker = start_worker(env, tmp_path / "worker2.log")

    async def recorded() -> bool:
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT state FROM notifications") == "sent"

    try:
        await _wait_for(recorded, worker, tmp_path / "worker2.log")
    finally:
        stop_worker(worker)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT attempts FROM notifications") == 2
    if channel == "sms":
        sent = sms_for(twilio, PHONE)
        assert len(sent) == 1 and twilio.state.duplicates == 0, sent
        assert "Ada Lovelace" in sent[0]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT body FROM notifications") == sent[0]
    else:
        ids = [m["message_id"] for m in smtp.state.messages]
        assert len(ids) == 2 and ids[0] == ids[1]  # re-sent, recognisably the same message
