"""`parcelcast work`: background work that failed on its own and was set aside."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import cli_settings, main, resolved, run, with_db


@main.group()
def work() -> None:
    """Inspect and re-queue quarantined background work."""


@work.command("failed")
@click.option("--details", is_flag=True, help="Show each failure's traceback too.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def work_failed(details: bool, limit: int) -> None:
    """List work that failed on its own (its batch went through without it): kind, subject,
    attempts, the next retry and the error."""
    from service.store import failed_work

    settings = resolved(cli_settings())

    async def listing(conn: Any) -> list[failed_work.FailedWork]:
        return await failed_work.list_failing(conn, limit)

    rows = run(lambda: with_db(settings, listing))
    if not rows:
        click.echo("no failed work")
        return
    for row in rows:
        click.echo(f"{row.id}\t{row.kind}\t{row.subject_id}\tattempts={row.attempts}\t"
                   f"retry_at={row.retry_at.isoformat()}\t{row.error}")
        if details:
            click.echo(row.detail.rstrip())


@work.command("retry")
@click.argument("failed_id", type=int)
def work_retry(failed_id: int) -> None:
    """Queue a quarantined piece of work now (after its cause was fixed)."""
    from service.store import failed_work

    settings = resolved(cli_settings())

    async def retry(conn: Any) -> bool:
        async with conn.transaction():
            return await failed_work.retry_now(conn, failed_id, settings.clock().now())

    if not run(lambda: with_db(settings, retry)):
        raise click.ClickException(f"no failed work with id {failed_id}")
    click.echo(f"failed work {failed_id} queued")
