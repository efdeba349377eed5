"""Real PostgreSQL and Redis for tests: the machine's when they answer, else embedded ones."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from service.clock import Clock
from service.settings import Settings
from service.store.embedded import (  # noqa: F401 - with_database is re-exported for tests
    free_port,
    redis_server_binary,
    start_embedded_postgres,
    with_database,
)

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_admin_url(tmp: Path) -> str:
    """A PostgreSQL URL to create test databases with."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    if _port_open("127.0.0.1", 5432):
        return LOCAL_POSTGRES
    return start_embedded_postgres(tmp / "pgdata")


def redis_url() -> str:
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        return explicit
    if _port_open("127.0.0.1", 6379):
        return LOCAL_REDIS
    return OwnRedis(Path(f"/tmp/pc-redis-{uuid.uuid4().hex[:8]}")).start()


class OwnRedis:
    """A redis-server process of our own, which a test may stop and start again."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self._port_chosen = port is None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server; on its first start, on another port if the one chosen was
        taken meanwhile (free_port() only knows it was free a moment ago). Started again
        (after stop()), it keeps its port: its clients know that URL."""
        self.folder.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or redis_server_binary()
        for _ in range(5):
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._answers():
                self._port_chosen = False
                return self.url
            self.process.kill()
            self.process.wait(10)
            if not self._port_chosen:
                break
            self.port = free_port()
        raise RuntimeError(f"redis-server could not listen on 127.0.0.1:{self.port}")

    def _answers(self) -> bool:
        """Whether our process (not another one that holds the port: ours then exits)
        answers on the port, waiting for it (a generous deadline)."""
        assert self.process is not None
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 60
        try:
            while self.process.poll() is None:
                try:
                    info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
                    return int(info["process_id"]) == self.process.pid
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the server (no save: whatever it held is gone, like a crash)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


def postgres_binaries() -> Path | None:
    """The folder of initdb/pg_ctl/postgres (on PATH, or Debian's /usr/lib/postgresql/N/bin)."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).resolve().parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


class OwnPostgres:
    """A PostgreSQL cluster of our own (initdb + pg_ctl on a spare port), which a test may
    restart, stop and start again. As root, the server runs as the `postgres` user."""

    def __init__(self, binaries: Path, port: int | None = None) -> None:
        self.binaries = binaries
        self.port = port or free_port()
        # Not under pytest's tmp folders: the postgres user must be able to reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="pc-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> OwnPostgres:
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N",
                  "-E", "UTF8", "--locale=C")
        with (self.data / "postgresql.conf").open("a") as conf:
            # Commits stay durable against the server's own crash (what the drills do to
            # it); only the machine's crash is not guarded against (no fsync).
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.folder}'\nfsync = off\n"
                       "full_page_writes = off\nmax_connections = 200\n"
                       "shared_buffers = 64MB\n")
        return self

    def start(self) -> str:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "start")
        return self.url

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: like a crash; `fast`: connections cut, clean)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    def restart(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w",
                  "-t", "60", "restart")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def worker_env(settings: Settings, clock: Clock, **extra: str) -> dict[str, str]:
    """The environment of a `parcelcast worker` process a test starts: the test's stores and
    queue, and its business time (the process's clock starts at the test clock's "now" and
    runs at real speed from there), so nothing depends on the time of day the test runs."""
    env = {
        **os.environ, "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "", "PARCELCAST_QUEUE_NAME": settings.parcelcast_queue_name,
        "EMAIL_TRANSPORT": settings.email_transport, "SMTP_PORT": str(settings.smtp_port),
        "SMS_TRANSPORT": settings.sms_transport,
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
        "PUBLIC_BASE_URL": str(settings.public_base_url), "PARCELCAST_LOG_LEVEL": "WARNING",
        "PARCELCAST_DATA_DIR": str(settings.data_dir),
        "PARCELCAST_CLOCK_START": clock.now().isoformat(), "PARCELCAST_CLOCK_SPEED": "1",
    }
    if settings.twilio_base_url is not None:
        env["TWILIO_BASE_URL"] = str(settings.twilio_base_url)
    env.pop("PARCELCAST_CLOCK_ANCHOR", None)  # anchored when the process starts
    return {**env, **extra}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real `parcelcast worker` process, its output in `log`."""
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env,
                                stdout=handle, stderr=subprocess.STDOUT)


def stop_worker(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM a `parcelcast worker` (it drains its jobs first); kill it if that runs long.

    A drained worker can still take the bounded shutdown (see workers.main) to exit; the
    tests have checked what they need by then, so they do not wait for it.
    """
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
