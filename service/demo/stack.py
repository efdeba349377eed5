"""The demo's processes: the API, two workers and both provider stand-ins, on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from service.store.embedded import free_port

DEMO_QUEUE = "parcelcast:demo"
# The README's examples use the API on this port; the demo takes another when it is busy.
API_PORT = 8080
# The demo's own Twilio credentials: the stand-in is started with them and the API and
# workers sign with them (the stand-ins run as processes; nothing of theirs is imported).
DEMO_TWILIO_SID = "AC" + "d3" * 16
DEMO_TWILIO_TOKEN = "demo-twilio-auth-token"


class ExitedEarly(Exception):
    """A demo process ended before every process answered; the message ends with the last
    lines of its log."""

    def __init__(self, name: str, code: int, log: Path, lines: int = 15) -> None:
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        shown = "".join(f"\n    {line}" for line in tail) or " (its log is empty)"
        super().__init__(f"the demo's {name} process exited early (exit code {code}):{shown}")
        self.name = name


@dataclass
class Stack:
    """Child processes sharing one database, one Redis and one simulated clock."""

    database_url: str
    redis_url: str
    clock_start: str
    clock_anchor: float
    speed: float
    # From this simulated instant (the replay's end) the clock runs at real speed.
    realtime_from: str
    log_dir: Path
    api_port: int
    workers: int = 2
    queue: str = DEMO_QUEUE
    twilio_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    smtp_http_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def twilio(self) -> str:
        return f"http://127.0.0.1:{self.twilio_port}"

    @property
    def smtp_control(self) -> str:
        return f"http://127.0.0.1:{self.smtp_http_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
            "PARCELCAST_QUEUE_NAME": self.queue,
            "PARCELCAST_CLOCK_START": self.clock_start,
            "PARCELCAST_CLOCK_ANCHOR": repr(self.clock_anchor),
            "PARCELCAST_CLOCK_SPEED": repr(self.speed),
            "PARCELCAST_CLOCK_REALTIME_FROM": self.realtime_from,
            "PUBLIC_BASE_URL": self.api, "PARCELCAST_LOG_LEVEL": "INFO",
            "EMAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port),
            "SMS_TRANSPORT": "twilio", "TWILIO_BASE_URL": self.twilio,
            "TWILIO_ACCOUNT_SID": DEMO_TWILIO_SID, "TWILIO_AUTH_TOKEN": DEMO_TWILIO_TOKEN,
            # Real seconds: sweeps often, hand lost work over quickly.
            "SWEEP_INTERVAL_S": "2", "PARCELCAST_STALE_AFTER_S": "20",
            "SMS_PER_SECOND": "200", "EMAIL_PER_SECOND": "400",
            # The window is recalibrated as in production, at each day's start on the demo's
            # clock (workers.recalibration): a clock day passes every 12 real seconds.
            "RECALIBRATE_EVERY_HOURS": "24",
        }

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _spawn(self, name: str, *args: str) -> None:
        with self.log(name).open("wb") as log:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", *args], env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT))
        self.names.append(name)

    async def start(self, attempts: int = 3) -> None:
        """Start every process and wait until each answers. A process that exits while the
        others start (a port another program took between choosing and binding it, a
        service still starting) is reported with the end of its log, and the whole set is
        started again on fresh ports, up to `attempts` times."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            self._spawn_all()
            try:
                await self._wait_ready([f"{self.api}/readyz", f"{self.twilio}/_stats",
                                        f"{self.smtp_control}/_stats"])
                return
            except ExitedEarly as exited:
                self.stop()
                kept = self.log(exited.name).with_suffix(f".attempt{attempt}.log")
                self.log(exited.name).replace(kept)
                if attempt == attempts:
                    raise RuntimeError(f"{exited}; its log: {kept}") from None
                print(f"{exited}; starting the demo's processes again (its log: {kept})",
                      file=sys.stderr, flush=True)
                self.twilio_port, self.smtp_port, self.smtp_http_port = (
                    free_port(), free_port(), free_port())
                self.api_port = api_port(self.api_port)

    def _spawn_all(self) -> None:
        self._spawn("twilio", "standins.twilio_server", "--port", str(self.twilio_port),
                    "--account-sid", DEMO_TWILIO_SID, "--auth-token", DEMO_TWILIO_TOKEN)
        self._spawn("smtp", "standins.smtp_server", "--smtp-port", str(self.smtp_port),
                    "--http-port", str(self.smtp_http_port))
        self._spawn("api", "service.cli", "serve", "--port", str(self.api_port))
        for n in range(self.workers):
            self._spawn(f"worker{n + 1}", "service.cli", "worker")

    async def _wait_ready(self, urls: list[str], limit_s: float = 60) -> None:
        deadline = time.monotonic() + limit_s
        async with aiohttp.ClientSession() as session:
            for url in urls:
                while True:
                    for process, name in zip(self.processes, self.names, strict=True):
                        if process.poll() is not None:
                            raise ExitedEarly(name, process.returncode, self.log(name))
                    try:
                        async with session.get(url) as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} never became ready; see {self.log_dir}")
                    await asyncio.sleep(0.1)

    def stop_workers(self, limit_s: float = 60) -> bool:
        """SIGTERM the workers and wait for them to exit: they stop handing off and taking
        jobs and finish the ones running, so afterwards nothing is half sent. False when
        one had to be killed after `limit_s`. Blocking: run it in a thread."""
        workers = [p for p, name in zip(self.processes, self.names, strict=True)
                   if name.startswith("worker")]
        for process in workers:
            process.terminate()
        deadline = time.monotonic() + limit_s
        clean = True
        for process in workers:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                clean = False
        return clean

    def stop(self) -> None:
        """Every child ends: asked first, killed if it has not within 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        self.names.clear()


def api_port(wanted: int = API_PORT) -> int:
    """`wanted` when it is free, else (or for 0) any free port."""
    if not wanted:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            return free_port()
    return wanted
