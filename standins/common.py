"""Bits both stand-ins share: a free loopback port, and the aiohttp runner lifecycle."""

from __future__ import annotations

import socket

from aiohttp import web

from service.store.embedded import free_port

__all__ = ["free_port", "start_site"]


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 = any free port); returns the runner and the bound port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, int(sock.getsockname()[1])
