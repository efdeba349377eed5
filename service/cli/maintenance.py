"""`parcelcast maintenance`: tracking events' partitions ahead of time, expired ones dropped."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from service.cli.common import cli_settings, main, resolved, run, with_db

if TYPE_CHECKING:
    from service.tracking.retention import Report


@main.command("maintenance")
@click.option("--dry-run", is_flag=True, help="Say what would be created and dropped; change "
                                              "nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--ahead", type=click.IntRange(1, 120), default=None,
              help="Months past this one to have partitions for [EVENT_PARTITIONS_AHEAD].")
@click.option("--retention-months", type=click.IntRange(0, 1200), default=None,
              help="Drop months of events this many whole months after they ended; 0 keeps "
                   "everything [EVENT_RETENTION_MONTHS].")
def maintenance(dry_run: bool, as_json: bool, ahead: int | None,
                retention_months: int | None) -> None:
    """Create the tracking events' monthly partitions for this month and the next ones
    (moving rows the default partition holds for them), and drop the months past the
    retention with their events and dedupe keys. Workers run the same every
    MAINTENANCE_INTERVAL_S seconds."""
    from service.tracking.retention import maintain

    settings = resolved(cli_settings(), echo=not as_json)
    months_ahead = settings.event_partitions_ahead if ahead is None else ahead
    retention = (settings.event_retention_months if retention_months is None
                 else retention_months)

    async def go(conn: Any) -> Report:
        return await maintain(conn, settings.clock().now(), months_ahead, retention,
                              dry_run=dry_run)

    report = run(lambda: with_db(settings, go))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(_text(report))
    if report.skipped or report.postponed:
        raise SystemExit(1)


def _text(report: Report) -> str:
    if report.skipped:
        return f"skipped: {report.skipped}"
    would = "would " if report.dry_run else ""
    lines = []
    for c in report.created:
        moved = (f" ({c['moved_from_default']} events from the default partition)"
                 if c["moved_from_default"] else "")
        lines.append(f"{would}create {c['name']}{moved}")
    for d in report.dropped:
        lines.append(f"{would}drop {d['name']} ({d['events']} events)")
    for change in report.postponed:
        lines.append(f"postponed: {change} (the table stayed busy past the lock timeout; "
                     "run again)")
    if report.expired_from_default:
        lines.append(f"{would}delete {report.expired_from_default} expired events from the "
                     "default partition")
    kept = ("retention off: every event is kept" if report.cutoff is None
            else f"events stored before {report.cutoff.date().isoformat()} are expired")
    lines.append(kept if lines else f"nothing to do ({kept})")
    lines.append(f"partitions: {', '.join(report.partitions)}")
    return "\n".join(lines)
