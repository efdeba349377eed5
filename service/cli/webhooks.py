"""`parcelcast webhooks`: stored webhook deliveries."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import (
    cli_settings,
    instant,
    main,
    resolved,
    run,
    with_db,
)


@main.group()
def webhooks() -> None:
    """The webhook deliveries kept in webhook_deliveries."""


@webhooks.command("reprocess")
@click.option("--source", type=click.Choice(["shopify", "easypost", "aftership"]), default=None,
              help="Only this sender's deliveries (default: all).")
@click.option("--since", default=None,
              help="Only deliveries received at or after this: an ISO 8601 time with an offset "
                   "(or a date, meaning UTC midnight).")
@click.option("--id", "delivery", type=click.IntRange(min=1), default=None,
              help="Only the stored delivery with this id.")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
def webhooks_reprocess(source: str | None, since: str | None, delivery: int | None,
                       dry_run: bool) -> None:
    """Feed stored deliveries (any outcome, oldest first) through the current adapters and
    the normal ingestion path. Idempotent: events dedupe, estimates never go back to an older
    one, orders and shipments written since a delivery arrived keep their newer values, and
    events it produced get the status today's code maps give. Exits 1 if any still fails."""
    from service.integrations.pipeline import reprocess

    after = instant(since, "--since")
    settings = resolved(cli_settings())

    async def reprocess_all(conn: Any) -> Any:
        return await reprocess(conn, settings.clock().now(), source=source, since=after,
                               delivery=delivery, dry_run=dry_run)

    report = run(lambda: with_db(settings, reprocess_all))
    if delivery is not None and report.deliveries == 0:
        raise click.ClickException(
            f"no stored delivery with id {delivery}"
            + (f" from {source}" if source else "") + (" received since then" if after else ""))
    for failure in report.failed:
        click.echo(f"failed: delivery {failure.id} ({failure.source} {failure.delivery_id}): "
                   f"{failure.error}")
    click.echo(f"{'would reprocess' if dry_run else 'reprocessed'} {report.deliveries} "
               f"deliveries: {report.processed} processed, {report.ignored} ignored, "
               f"{len(report.failed)} failed")
    click.echo(f"events: {report.new_events} new, {report.duplicates} duplicates, "
               f"{report.corrected} corrected")
    if report.kept_newer:
        click.echo(f"orders/shipments left as they are (changed since the delivery): "
                   f"{report.kept_newer}")
    if dry_run:
        click.echo("dry run: nothing was written", err=True)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} deliveries still fail")

