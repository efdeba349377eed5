"""`parcelcast keys`: API keys."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import (
    cli_settings,
    main,
    resolved,
    run,
    with_db,
)
from service.security.api_keys import SCOPES


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(list(SCOPES)))
@click.option("--name", default="", help="A label to recognise the key by.")
def keys_create(scopes: tuple[str, ...], name: str) -> None:
    """Create a key; it is shown once and stored only as a hash."""
    from service.security.api_keys import new_key
    from service.store import api_keys

    settings = resolved(cli_settings())

    async def create(conn: Any) -> str:
        key_id, key, key_hash = new_key()
        await api_keys.create(conn, key_id, key_hash, sorted(set(scopes)), name,
                              settings.clock().now())
        return key

    key = run(lambda: with_db(settings, create))
    click.echo(key)
    click.echo(f"scopes: {', '.join(sorted(set(scopes)))} (store it now: it is not shown again)",
               err=True)


@keys.command("list")
def keys_list() -> None:
    """List keys (ids and scopes, never the secrets)."""
    from service.store import api_keys

    settings = resolved(cli_settings())

    for row in run(lambda: with_db(settings, api_keys.list_all)):
        state = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.key_id}\t{state}\t{','.join(row.scopes)}\t{row.name}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (the 8 characters after pc_)."""
    from service.store import api_keys

    settings = resolved(cli_settings())

    async def revoke(conn: Any) -> bool:
        return await api_keys.revoke(conn, key_id, settings.clock().now())

    if not run(lambda: with_db(settings, revoke)):
        raise click.ClickException(f"no active key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


