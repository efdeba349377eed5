"""`parcelcast notifications` and `parcelcast templates`."""

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


@main.group()
def notifications() -> None:
    """Inspect and re-queue notifications that could not be sent."""


@notifications.command("rules")
@click.argument("moment", required=False)
@click.option("--channels", default=None, help="Comma-separated: email,sms.")
@click.option("--off", is_flag=True, help="Turn the moment off.")
def notifications_rules(moment: str | None, channels: str | None, off: bool) -> None:
    """Show which moments notify on which channels, or change one."""
    from service.store import notifications as notifications_db
    from workers.render import MOMENTS

    settings = resolved(cli_settings())
    if moment is not None and moment not in MOMENTS:
        raise click.BadParameter(f"one of: {', '.join(MOMENTS)}", param_hint="MOMENT")
    chosen: list[str] | None = None
    if channels is not None:
        chosen = [c.strip() for c in channels.split(",") if c.strip()]
        if not chosen or any(c not in ("email", "sms") for c in chosen):
            raise click.BadParameter("use email, sms or email,sms", param_hint="--channels")

    async def apply(conn: Any) -> dict[str, list[str]]:
        if moment is not None and (off or chosen is not None):
            current = (await notifications_db.rules(conn)).get(moment, ["email"])
            await notifications_db.set_rule(conn, moment, not off, chosen or current)
        return await notifications_db.rules(conn)

    rules = run(lambda: with_db(settings, apply))
    for name in MOMENTS:
        click.echo(f"{name}\t{','.join(rules[name]) if name in rules else 'off'}")


@notifications.command("failed")
def notifications_failed() -> None:
    """List dead-lettered (retries exhausted) and permanently failed notifications."""
    from service.store import notifications as notifications_db

    settings = resolved(cli_settings())

    rows = run(lambda: with_db(settings, notifications_db.list_failed))
    if not rows:
        click.echo("no failed notifications")
    for row in rows:
        click.echo(f"{row.id}\t{row.state}\t{row.moment}\t{row.channel}\t"
                   f"{row.recipient}\tattempts={row.attempts}\t{row.last_error}")


@notifications.command("retry")
@click.argument("notification_id", type=int)
def notifications_retry(notification_id: int) -> None:
    """Re-queue a failed or dead notification (a worker sends it)."""
    from service.store import notifications as notifications_db

    settings = resolved(cli_settings())

    async def retry(conn: Any) -> bool:
        async with conn.transaction():
            return await notifications_db.retry(conn, notification_id,
                                                settings.clock().now())

    if not run(lambda: with_db(settings, retry)):
        raise click.ClickException(f"notification {notification_id} is not failed or dead")
    click.echo(f"notification {notification_id} re-queued")


@main.group()
def templates() -> None:
    """Notification templates."""


@templates.command("preview")
@click.argument("moment")
@click.option("--channel", type=click.Choice(["email", "sms"]), default="email",
              show_default=True)
@click.option("--locale", default="en", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of the terminal.")
def templates_preview(moment: str, channel: str, locale: str, out: str | None) -> None:
    """Render MOMENT with sample data, as a customer would receive it."""
    from workers.render import MOMENTS, RenderError
    from workers.render.preview import preview

    if moment not in MOMENTS:
        raise click.BadParameter(f"unknown moment; one of: {', '.join(MOMENTS)}",
                                 param_hint="MOMENT")
    try:
        text = preview(moment, "sms" if channel == "sms" else "email", locale, out)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(text)
    else:
        click.echo(f"wrote {out}", err=True)


