"""`parcelcast carriers` and `parcelcast events`: the carrier vocabulary and stored events."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import cli_settings, main, resolved, run, with_db


@main.group()
def carriers() -> None:
    """The carrier code tables (service/tracking/carriers/*.csv) and what they miss."""


@carriers.command("unknown")
@click.option("--carrier", default=None, help="Only this carrier (our slug, e.g. ups).")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
def carriers_unknown(carrier: str | None, limit: int) -> None:
    """Codes that no table maps, most events first: carrier, code, events, first and last
    seen, and a sample description. Add a row to the carrier's table, then run
    `parcelcast events remap`."""
    from service.store import vocabulary

    settings = resolved(cli_settings())

    async def listing(conn: Any) -> list[vocabulary.UnknownCode]:
        return await vocabulary.unknown_codes(conn, carrier, limit)

    rows = run(lambda: with_db(settings, listing))
    if not rows:
        click.echo("no unknown codes")
        return
    click.echo("carrier\tcode\tevents\tfirst_seen\tlast_seen\tsample_description")
    for r in rows:
        click.echo(f"{r.carrier}\t{r.code}\t{r.events}\t{r.first_seen_at.isoformat()}\t"
                   f"{r.last_seen_at.isoformat()}\t{r.sample_description or ''}")


@carriers.command("coverage")
def carriers_coverage() -> None:
    """Per table: how many of its documented codes map to a real status (not unknown)."""
    from service.tracking.carrier_tables import coverage

    click.echo(f"{'table':<16}{'mapped':>8}{'codes':>8}{'share':>9}")
    for name, (mapped, total) in coverage().items():
        share = f"{mapped / total:.1%}" if total else "-"
        click.echo(f"{name:<16}{mapped:>8}{total:>8}{share:>9}")


@main.group()
def events() -> None:
    """Stored tracking events."""


@events.command("remap")
@click.option("--carrier", default=None, help="Only this carrier's events (our slug).")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
def events_remap(carrier: str | None, dry_run: bool) -> None:
    """Give every stored event the status and substatus today's carrier tables say, then
    re-derive the shipments that changed and queue their refresh (ETAs and messages follow,
    as after ingest). Idempotent: a second run changes nothing."""
    from service.store import vocabulary
    from service.tracking.carrier_codes import remap
    from service.tracking.taxonomy import STATUSES

    settings = resolved(cli_settings())

    def derive(carrier: str, raw_code: str | None, payload: Any) -> Any:
        return remap(carrier, raw_code, payload, STATUSES)

    async def remap_all(conn: Any) -> vocabulary.RemapReport:
        return await vocabulary.remap(conn, derive, settings.clock().now(), carrier=carrier,
                                      dry_run=dry_run)

    report = run(lambda: with_db(settings, remap_all))
    for (old, new), n in sorted((report.by_change or {}).items()):
        click.echo(f"{old} -> {new}: {n}")
    click.echo(f"{'would change' if dry_run else 'changed'} {report.changed} of {report.events} "
               f"events; {report.shipments} shipments re-derived and queued for refresh")
