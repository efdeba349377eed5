"""Shared benchmark plumbing: a scratch database, a served app in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from service.security.api_keys import new_key
from service.store import api_keys
from service.store.embedded import free_port, with_database
from service.store.migrations import upgrade
from tests.servers import postgres_admin_url, redis_url

RESULTS = Path(__file__).resolve().parent / "results"


class ScratchDatabase:
    """A migrated database of its own, dropped afterwards."""

    def __init__(self) -> None:
        self.admin_url = postgres_admin_url(Path("/tmp/parcelcast-bench"))
        self.name = f"parcelcast_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.url = with_database(self.admin_url, self.name)

    async def __aenter__(self) -> ScratchDatabase:
        conn = await asyncpg.connect(self.admin_url)
        await conn.execute(f'CREATE DATABASE "{self.name}"')
        await conn.close()
        await asyncio.to_thread(upgrade, self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn = await asyncpg.connect(self.admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await conn.close()

    async def admin_key(self) -> str:
        key_id, key, key_hash = new_key()
        conn = await asyncpg.connect(self.url)
        from datetime import UTC, datetime

        await api_keys.create(conn, key_id, key_hash, ["admin"], "bench", datetime.now(UTC))
        await conn.close()
        return key


class ServedApp:
    """`parcelcast serve` as a separate process."""

    def __init__(self, database_url: str, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url(),
                    "PARCELCAST_LOG_LEVEL": "WARNING", **(extra_env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ServedApp:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.base}/healthz") as answer:
                        if answer.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the service did not start")
                await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("not started")
        return self.process.pid


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_result(name: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "rows": rows, **(extra or {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| figure | measured | floor (same run) | ratio | target | met |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f"{row['ratio']:.0%}" if row.get("ratio") is not None else "—"
        floor = row.get("floor") or "—"
        lines.append(f"| {row['figure']} | {row['measured']} | {floor} | {ratio} | "
                     f"{row['target']} | {'yes' if row['met'] else 'NO'} |")
    return "\n".join(lines)
