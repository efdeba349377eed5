"""`parcelcast demo`."""

from __future__ import annotations

import click

from service.cli.common import (
    cli_settings,
    main,
    resolved,
    run,
)


@main.command()
@click.option("--shipments", type=click.IntRange(500, 2_000_000), default=50_000,
              show_default=True, help="Delivered shipments in the 90-day history.")
@click.option("--days", type=click.IntRange(1, 30), default=5, show_default=True,
              help="Days of live traffic to replay.")
@click.option("--speed", type=click.FloatRange(min=1), default=None,
              help="Simulated seconds per real second (default: the days in ~90 s).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--rounds", type=click.IntRange(10, 5000), default=200, show_default=True,
              help="Boosting rounds for the model.")
@click.option("--keep-running", is_flag=True, help="Leave everything up to explore.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary as JSON to this file.")
def demo(shipments: int, days: int, speed: float | None, seed: int, rounds: int,
         keep_running: bool, json_path: str | None) -> None:
    """A shop's history simulated, a model trained, live days replayed through the real API,
    workers and provider stand-ins; then what happened, in numbers."""
    from service.demo.run import DemoOptions, run_demo

    settings = resolved(cli_settings())
    options = DemoOptions(shipments, days, speed or 0.0, seed, keep_running, rounds)
    try:
        result = run(lambda: run_demo(settings, options))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        return
    if json_path:
        import json

        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2, default=str)


