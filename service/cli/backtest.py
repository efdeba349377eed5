"""`parcelcast backtest`: the walk-forward backtest of :mod:`predictor.backtest` on a history
file (the library's command line, with the service's conventions: a history file is always
named, nothing is read from outside the repository unless you name it)."""

from __future__ import annotations

import click

from service.cli.common import main


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--history", "history_path", type=click.Path(dir_okay=False), default=None,
              help="History CSV (olist and custom; not needed for simulated).")
@click.option("--format", "fmt", type=click.Choice(["olist", "custom", "simulated"]),
              required=True, help="Layout of the history.")
@click.option("--mapping", default=None, help="custom: JSON mapping, inline or a file.")
@click.option("--start", default=None, help="First label day scored (YYYY-MM-DD, UTC).")
@click.option("--end", default=None, help="Labels before this day are scored.")
@click.option("--retrain-every", default="7d", show_default=True,
              help="7d | 30d | never (any Nd or Nh).")
@click.option("--recalibrate-every", default="1d", show_default=True)
@click.option("--stage", default="all", show_default=True,
              help="Stage of the monthly tables: all, label, first_scan, later, between_scans.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the whole result as JSON here.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write plots and an HTML page (index.html) to this folder.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def backtest(history_path: str | None, fmt: str, mapping: str | None, start: str | None,
             end: str | None, retrain_every: str, recalibrate_every: str, stage: str,
             json_out: str | None, report_dir: str | None, extra: tuple[str, ...]) -> None:
    """Replay a history in time order as production runs it (retrain on what was known,
    recalibrate daily, serve every stage) and score it per month and stage against
    baselines that adapt too. Further options of `python -m predictor.backtest` (e.g.
    --rounds, --shipments, --regime-change, --quiet) pass through."""
    from predictor.backtest import main as run_backtest

    if fmt != "simulated" and history_path is None:
        raise click.UsageError("--history FILE is needed for --format olist and custom")
    argv = ["--format", fmt, "--retrain-every", retrain_every,
            "--recalibrate-every", recalibrate_every, "--stage", stage]
    for flag, value in (("--history", history_path), ("--mapping", mapping),
                        ("--start", start), ("--end", end), ("--json", json_out),
                        ("--report", report_dir)):
        if value is not None:
            argv += [flag, value]
    try:
        code = run_backtest(argv + list(extra))
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        raise SystemExit(code)
