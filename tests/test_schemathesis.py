"""Schemathesis against a real `parcelcast serve` process and its own /openapi.json.

The server runs on a loopback port with this run's PostgreSQL and Redis, webhook secrets
set (tests.schemathesis_hooks signs generated deliveries, so they reach the adapters) and a
small promoted ETA model (so quotes are computed, not refused). Bounded: a fixed seed, a
fixed number of examples per operation and a time budget. Every response must be no 5xx
and conform to the document: status code, content type, headers and body schema.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from predictor.simulator import simulate
from service.clock import ManualClock
from service.eta.training import train_and_register
from service.settings import Settings
from service.store.embedded import free_port
from service.store.history import load_history
from tests.conftest import START
from tests.servers import worker_env

SECRETS = {
    "SHOPIFY_WEBHOOK_SECRET": "shpss_schemathesis_0123456789",
    "EASYPOST_WEBHOOK_SECRET": "easypost-schemathesis-0123456789",
    "AFTERSHIP_WEBHOOK_SECRET": "aftership-schemathesis-0123456789",
}
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,unsupported_method,"
          "allow_header_conformance")
# A deeper run by hand: SCHEMATHESIS_MAX_EXAMPLES=1000 ./run tests tests/test_schemathesis.py -s
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "120"))
TOOL = Path(sys.executable).with_name("schemathesis")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def served(settings: Settings, pool: asyncpg.Pool, tmp_path: Path
                 ) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A real API process (base URL, its environment), with a promoted model."""
    async with pool.acquire() as conn:
        history = simulate(600, 30, START - timedelta(days=31), seed=5)
        await load_history(conn, history.orders, history.shipments, history.events, START)
        assert (await train_and_register(conn, START, rounds=10)).promoted
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = worker_env(settings, ManualClock(START), PUBLIC_BASE_URL=base,
                     TWILIO_AUTH_TOKEN="twilio-schemathesis-token", **SECRETS)
    log = (tmp_path / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "serve", "--port", str(port), env=env,
        stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        # A generous deadline, not a target: the process imports its libraries first, which
        # takes much longer on a loaded machine.
        deadline = asyncio.get_running_loop().time() + 180
        async with aiohttp.ClientSession() as session:
            while True:
                if process.returncode is not None:
                    pytest.fail(f"the API exited ({process.returncode}); see {tmp_path}/serve.log")
                try:
                    async with session.get(f"{base}/healthz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    pytest.fail(f"the API did not start within 180 s; see {tmp_path}/serve.log")
                await asyncio.sleep(0.1)
        yield base, env
    finally:
        process.terminate()
        await process.wait()
        log.close()


# Thousands of requests to a real API process, and a model trained first: on a loaded machine
# that takes longer than the suite's per-test limit allows an ordinary test (it took over
# 300 s at load 17-24 on 2 cores), as the drills do.
@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    served: tuple[str, dict[str, str]], admin: dict[str, str], tmp_path: Path
) -> None:
    base, env = served
    report = tmp_path / "schemathesis.json"
    run = await asyncio.create_subprocess_exec(
        str(TOOL), "run", f"{base}/openapi.json", "--checks", CHECKS,
        "--header", f"Authorization: {admin['Authorization']}",
        "--max-examples", str(MAX_EXAMPLES), "--seed", "11",
        "--workers", "2", "--no-color", "--generation-database", "none",
        "--report", "json", "--report-json-path", str(report),
        env={**env, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
             "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))},
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await run.communicate()
    text = output.decode(errors="replace")
    assert report.exists(), text[-5000:]
    found = json.loads(report.read_text())
    figures = {"operations": found["operations"]["tested"],
               "examples": found["test_cases"]["generated"],
               "failures": found["failures"], "errors": found["errors"],
               "seconds": round(found["running_time"], 1)}
    print(f"schemathesis: {figures}")  # the figures, with -s
    print("accepted/rejected by operation:", json.dumps(found["valid_rates"]))
    assert found["operations"]["tested"] == found["operations"]["total"] >= 18, figures
    assert not found["failures"] and not found["errors"], text[-8000:]
    assert run.returncode == 0, text[-8000:]
