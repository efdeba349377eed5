"""`parcelcast demo`."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click

from service.cli.common import (
    cli_settings,
    main,
    resolved,
    run,
)


@main.command()
@click.option("--shipments", type=click.IntRange(500, 2_000_000), default=20_000,
              show_default=True, help="Delivered shipments in the 90-day history.")
@click.option("--days", type=click.IntRange(1, 30), default=5, show_default=True,
              help="Days of live traffic to replay.")
@click.option("--speed", type=click.FloatRange(min=1), default=None,
              help="Simulated seconds per real second (default: the days in ~60 s).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--rounds", type=click.IntRange(10, 5000), default=60, show_default=True,
              help="Boosting rounds for the demo's model (trained on at most 60,000 snapshots).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="The API's port (another when it is busy; 0: any free port).")
@click.option("--keep-running", is_flag=True,
              help="Leave the API, workers and stand-ins up to explore, the clock "
                   "at real speed after the replay; Ctrl+C stops them.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary as JSON to this file.")
@click.option("--clean", is_flag=True,
              help="Drop the demo's databases (nothing else runs); `parcelcast` commands use "
                   "the server's own database again.")
@click.option("--started-at", type=float, default=None, hidden=True,
              envvar="PARCELCAST_RUN_STARTED",
              help="Epoch second the stage times count from (`./run demo` sets it).")
def demo(shipments: int, days: int, speed: float | None, seed: int, rounds: int, port: int,
         keep_running: bool, json_path: str | None, clean: bool, started_at: float | None
         ) -> None:
    """A shop's history simulated, a model trained, live days replayed through the real API,
    workers and provider stand-ins; then what happened, in numbers.

    With DATABASE_URL unset, the demo's database stays the default of every `parcelcast`
    command afterwards, until `parcelcast demo --clean`."""
    import time

    from service.demo.console import log_to_file, shown

    if clean:
        clean_demo()
        return
    settings = cli_settings()
    log_dir = settings.data_dir / "demo-logs"
    log_to_file(log_dir / "demo.log", settings.parcelcast_log_level)
    click.echo(f"Parcelcast demo: 2-4 minutes; logs in {shown(log_dir)}/")
    # Said before the heavy imports (pandas, XGBoost): they take seconds on a first run.
    from service.demo.console import Console
    from service.demo.run import STAGES, DemoOptions, run_demo

    console = Console(started_at or time.time(), STAGES)  # clock-ok: a stopwatch
    options = DemoOptions(shipments, days, speed or 0.0, seed, keep_running, rounds, port=port)

    async def until_signal() -> dict[str, Any]:
        # SIGTERM cancels the demo like Ctrl+C does, so its child processes are stopped.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_demo(settings, options, console, log_dir)

    try:
        result = run(until_signal)
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        click.echo("\nstopped: the API, workers and stand-ins have ended", err=True)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 143)
    if json_path:
        import json

        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2, default=str)


def clean_demo() -> None:
    from service.demo import database as demo_db

    settings = resolved(cli_settings(), demo_default=False, echo=False)
    assert settings.database_url is not None
    dropped = run(lambda: demo_db.drop_all(settings.database_url or ""))
    demo_db.forget(settings.data_dir)
    click.echo(f"dropped {', '.join(dropped) if dropped else 'no demo database'}; "
               "`parcelcast` commands use the server's own database again")
