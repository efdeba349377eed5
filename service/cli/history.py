"""`parcelcast simulate` and `parcelcast import-history`: a shop's past, simulated or imported."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import (
    cli_settings,
    database_url,
    main,
    progress_bar,
    resolved,
    run,
)
from service.settings import Settings


@main.command()
@click.option("--shipments", "count", type=click.IntRange(10, 5_000_000), default=50_000,
              show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=90, show_default=True)
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2026-08-01",
              show_default=True, help="First order day (UTC).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write the API bodies (orders, shipments, events) as JSON Lines here.")
@click.option("--load", is_flag=True, help="Load the history into the database (COPY).")
def simulate(count: int, days: int, start: Any, seed: int, out: str | None, load: bool) -> None:
    """Generate a shop's shipment history with the documented simulator."""
    from datetime import UTC

    from predictor.simulator import simulate as run_simulation

    if out is None and not load:
        raise click.UsageError("say where it goes: --out DIR and/or --load")
    history = run_simulation(count, days, start.replace(tzinfo=UTC), seed)
    click.echo(f"simulated {len(history.shipments)} shipments, {len(history.events)} scans",
               err=True)
    if out is not None:
        _write_payloads(history, out)
    if load:
        settings = resolved(cli_settings())
        counts = run(lambda: _load_frames(settings, history.orders, history.shipments,
                                           history.events))
        click.echo(f"loaded {counts['orders']} orders, {counts['shipments']} shipments, "
                   f"{counts['events']} events")


def _write_payloads(history: Any, out: str) -> None:
    from pathlib import Path

    import orjson

    from predictor.payloads import to_api_payloads

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"orders": (folder / "orders.jsonl").open("wb"),
             "shipments": (folder / "shipments.jsonl").open("wb"),
             "tracking-events": (folder / "events.jsonl").open("wb")}
    try:
        for method, path, body in to_api_payloads(history):
            kind = path.split("/")[2]
            files[kind].write(orjson.dumps({"method": method, "path": path, "body": body}) + b"\n")
    finally:
        for handle in files.values():
            handle.close()
    click.echo(f"wrote {', '.join(str(f.name) for f in files.values())} in {folder}", err=True)


async def _load_frames(settings: Settings, orders: Any, shipments: Any, events: Any
                       ) -> dict[str, int]:
    from service.store.history import load_history
    from service.store.pool import connect

    bar = progress_bar(len(shipments) + len(events) + (0 if orders is None else len(orders)),
                        "loading")
    conn = await connect(database_url(settings))
    def advance(n: int) -> None:
        bar.update(n)
        bar.refresh()

    try:
        return await load_history(conn, orders, shipments, events, settings.clock().now(),
                                  progress=advance)
    finally:
        bar.close()
        await conn.close()


@main.command("import-history")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "preset", type=click.Choice(["olist", "custom"]), default="olist",
              show_default=True)
@click.option("--mapping", default=None,
              help='For --format custom: JSON {"target field": "CSV column", ...}.')
@click.option("--tz", default=None, help="Timezone of naive CSV times (custom format).")
def import_history(path: str, preset: str, mapping: str | None, tz: str | None) -> None:
    """Import past orders from a CSV (bad rows are reported by line and skipped)."""
    import json

    from predictor.olist import OLIST, load_csv

    if preset == "olist":
        columns, zone, defaults = OLIST.mapping, OLIST.tz, OLIST.defaults
    else:
        if not mapping or not tz:
            raise click.UsageError("--format custom needs --mapping and --tz")
        try:
            columns, zone, defaults = json.loads(mapping), tz, {}
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--mapping") from None
    try:
        shipments, events, errors = load_csv(path, columns, zone, defaults=defaults)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for error in errors[:20]:
        click.echo(f"line {error.line}: {error.reason}", err=True)
    if len(errors) > 20:
        click.echo(f"... and {len(errors) - 20} more bad lines", err=True)
    for frame in (shipments, events):
        frame["carrier"] = frame["carrier"].fillna("unknown").astype(str)
    shipments["service_level"] = shipments["service_level"].fillna("unknown").astype(str)
    shipments["order_id"] = shipments["order_id"].astype(str)
    settings = resolved(cli_settings())
    counts = run(lambda: _load_frames(settings, None, shipments, events))
    click.echo(f"imported {counts['shipments']} shipments and {counts['events']} events; "
               f"{len(errors)} bad lines skipped")


