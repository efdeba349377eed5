"""`parcelcast stores`: the embedded PostgreSQL and Redis."""

from __future__ import annotations

import click

from service.cli.common import (
    cli_settings,
    main,
)


@main.group()
def stores() -> None:
    """The embedded PostgreSQL and Redis in the data folder."""


@stores.command("stop")
def stores_stop() -> None:
    """Stop the embedded servers started in the data folder."""
    from service.store.embedded import stop_embedded_postgres, stop_embedded_redis

    settings = cli_settings()
    pg = stop_embedded_postgres(settings.data_dir / "postgres")
    rd = stop_embedded_redis(settings.data_dir / "redis")
    click.echo(f"postgres: {'stopped' if pg else 'not running'}; "
               f"redis: {'stopped' if rd else 'not running'}")


