"""A smoke test of `parcelcast demo`, as small as it goes, on real processes: its summary's
invariants, and the CLI on the demo's database afterwards. The full demo, as the README
prints it, runs in .ci/readme_walkthrough.py (from .ci/run)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from service.demo.stack import Stack
from service.settings import Settings
from service.store.embedded import free_port
from tests.conftest import START

CLI = [sys.executable, "-m", "service.cli"]


def test_smallest_demo_keeps_its_invariants(tmp_path: Path) -> None:
    # Embedded stores of its own, as the README's user has them: a demo database and queue
    # no other test run on this machine shares.
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "PARCELCAST_RUN_STARTED")}
    env["PARCELCAST_DATA_DIR"] = str(data)

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    out = tmp_path / "summary.json"
    try:
        # 8,000x: the 2 live days replay in ~22 s, time enough for the workers of a loaded
        # machine (at 16,000x they once fell > 40 simulated hours behind at load 13, and no
        # delivered parcel had an ETA shown before its delivery).
        result = cli("demo", "--shipments", "500", "--days", "2", "--speed", "8000",
                     "--rounds", "10", "--seed", "11", "--port", "0", "--json", str(out),
                     timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(out.read_text())
        standins = summary["standins"]
        # Nothing sent twice, and everything we recorded as sent reached a stand-in.
        assert standins["sms"]["duplicates"] == 0 and standins["email"]["duplicates"] == 0
        sent = {ch: sum(m["sent"] for m in summary["messages"] if m["channel"] == ch)
                for ch in ("sms", "email")}
        assert sent["sms"] == standins["sms"]["accepted"], (summary, result.stdout)
        assert sent["email"] == standins["email"]["accepted"], (summary, result.stdout)
        assert summary["ingested"]["rejected"] == 0 and not summary["ingested"]["http_errors"]
        accuracy = summary["accuracy"]
        assert accuracy["parcels"] > 0
        assert accuracy["parcels"] == accuracy["delivered"]  # every delivered parcel had an ETA
        # The terminal gets stage lines; the libraries' logs go to the demo's log file.
        assert "8/8 summary" in result.stdout
        assert " INFO " not in result.stdout + result.stderr
        assert "alembic" in (data / "demo-logs" / "demo.log").read_text()

        # The README's next steps: the CLI now works on the demo's database...
        models = cli("models", "list")
        assert models.returncode == 0 and "champion" in models.stdout, models.stderr
        assert "parcelcast_demo_11" in models.stderr
        # ...until it is dropped; then it says what to do, without a traceback.
        assert "dropped parcelcast_demo_11" in cli("demo", "--clean").stdout
        after = cli("models", "list")
        assert after.returncode == 1 and "parcelcast migrate" in after.stderr
        assert "Traceback" not in after.stderr
    finally:
        cli("stores", "stop")


async def test_demo_processes_start_again_when_one_cannot_bind_its_port(
        settings: Settings, tmp_path: Path) -> None:
    # Another program holds the port chosen for the Twilio stand-in (taken between choosing
    # and binding it): the stand-in exits, the demo says why and starts its set again on
    # fresh ports instead of giving up.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(settings.database_url, settings.redis_url, START.isoformat(), 0.0, 1.0,
                      START.isoformat(), tmp_path / "logs", free_port(), workers=1,
                      queue=settings.parcelcast_queue_name, twilio_port=port)
        try:
            await stack.start()
            assert stack.twilio_port != port
            async with aiohttp.ClientSession() as session:
                for url in (f"{stack.api}/readyz", f"{stack.twilio}/_stats"):
                    async with session.get(url) as answer:
                        assert answer.status == 200, url
        finally:
            stack.stop()
    failed = (tmp_path / "logs" / "twilio.attempt1.log").read_text()
    assert "address already in use" in failed.lower(), failed
