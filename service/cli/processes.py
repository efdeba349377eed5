"""`parcelcast migrate | serve | worker`: the processes that run Parcelcast."""

from __future__ import annotations

import asyncio
import socket

import click

from service.cli.common import (
    cli_settings,
    database_url,
    main,
    resolved,
    run,
)


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest."""
    from service.store.migrations import head_revision, upgrade

    settings = resolved(cli_settings())
    upgrade(database_url(settings))
    click.echo(f"database is at migration {head_revision()}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run the HTTP API."""
    from service.memory import without_pyarrow

    without_pyarrow()  # before pandas is imported (service/memory.py)
    from aiohttp import web

    from service.api.app import create_app
    from service.memory import limit_arenas, settle_collector

    limit_arenas()  # before any thread starts (service/memory.py)
    settings = resolved(cli_settings())
    app = create_app(settings, settings.clock())

    async def settled(_: web.Application) -> None:
        settle_collector()  # after the app's own start-up (pool, stores)

    app.on_startup.append(settled)
    from service.store.migrations import SchemaBehind

    # METRICS_BIND: a second, private address; /metrics answers only there.
    sockets = [metrics_socket(*settings.metrics_address)] if settings.metrics_address else None
    try:
        web.run_app(app, host=host, port=port, sock=sockets, access_log=None,
                    print=lambda msg: click.echo(msg, err=True))
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None


def metrics_socket(host: str, port: int) -> socket.socket:
    """A listening socket for METRICS_BIND (bound before the app starts, so a taken port
    stops start-up with a clear error)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"METRICS_BIND {host}:{port}: {exc}") from None
    return sock


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option("--health", is_flag=True,
              help="Ask the running worker on WORKER_HEALTH_PORT (or --port) whether every "
                   "loop is up; exit 0 if so, 1 if one has been down longer than "
                   "WORKER_DOWN_AFTER_S, 2 if the worker does not answer.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="With --health: the worker's health port.")
def worker(burst: bool, health: bool, port: int | None) -> None:
    """Run the relay and an arq worker."""
    import signal

    from service.memory import limit_arenas, without_pyarrow

    without_pyarrow()  # before pandas is imported (service/memory.py)
    from workers.main import run_worker

    if health:
        _worker_health(port)
        return
    limit_arenas()  # before any thread starts (service/memory.py)
    settings = resolved(cli_settings())

    async def work() -> None:
        from workers.main import DRAIN_SECONDS

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.create_task(run_worker(settings, settings.clock(), burst=burst,
                                                 stop=stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            stopping.cancel()
            running.result()
            return
        # Draining has its own limit; this one bounds everything else (closing pools).
        try:
            await asyncio.wait_for(running, DRAIN_SECONDS + 15)
        except (TimeoutError, asyncio.CancelledError):
            click.echo("worker: did not stop in time; exiting anyway", err=True)

    run(work)




def _worker_health(port: int | None) -> None:
    import aiohttp

    from workers.health import ask

    settings = cli_settings()
    port = port or settings.worker_health_port
    if port is None:
        raise click.UsageError("set WORKER_HEALTH_PORT (the worker's too) or give --port")
    try:
        status, body = asyncio.run(ask(settings.worker_health_host, port))
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        click.echo(f"worker on {settings.worker_health_host}:{port} does not answer: {exc}",
                   err=True)
        raise SystemExit(2) from None
    loops = body.get("loops", {})
    for name in sorted(loops):
        loop = loops[name]
        state = "up" if loop["up"] else f"down {loop['down_for_s']:.1f}s"
        error = f"\t{loop['last_error']}" if loop.get("last_error") else ""
        click.echo(f"{name}\t{state}\trestarts={loop['restarts']}{error}")
    click.echo(body.get("status", "unknown"))
    if status != 200:
        raise SystemExit(1)
