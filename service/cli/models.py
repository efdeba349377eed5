"""`parcelcast train` and `parcelcast models`: the ETA model registry."""

from __future__ import annotations

from typing import Any

import click

from service.cli.common import (
    cli_settings,
    instant,
    main,
    progress_bar,
    resolved,
    run,
    with_db,
)


@main.command()
@click.option("--rounds", type=click.IntRange(10, 5000), default=None,
              help="Boosting rounds (default: the predictor's).")
@click.option("--until", default=None,
              help="Train on shipments labelled before this: a date (UTC midnight) or an ISO "
                   "time with an offset (default: now).")
@click.option("--report", "report_path", type=click.Path(file_okay=False), default=None,
              help="Also write the evaluation (JSON + PNG plots) to this folder.")
@click.option("--dask-scheduler", "dask_scheduler", default=None, metavar="ADDRESS",
              help="Fit on this Dask cluster (e.g. tcp://10.0.0.5:8786) with XGBoost's "
                   "distributed training, reading the history one partition at a time "
                   "(needs the 'dask' extra; see docs/operations.md).")
def train(rounds: int | None, until: Any, report_path: str | None,
          dask_scheduler: str | None) -> None:
    """Train an ETA model on the history in the database, register it, and promote it if
    it beats the champion on the same evaluation data."""
    from service.eta.training import train_and_register

    until = instant(until, "--until")
    settings = resolved(cli_settings())
    bar = progress_bar(100, "training")

    def progress(stage: str, fraction: float) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(stage)
        bar.refresh()

    async def run_training(conn: Any) -> Any:
        return await train_and_register(conn, settings.clock().now(), until=until,
                                        rounds=rounds, progress=progress,
                                        dask_scheduler=dask_scheduler)

    try:
        outcome = run(lambda: with_db(settings, run_training))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    if report_path and dask_scheduler is not None:
        click.echo("no evaluation to write: training on a cluster fits no out-of-sample "
                   "booster (the comparison below is its evaluation)", err=True)
    elif report_path:
        from predictor.evaluate import write_report

        write_report(outcome.report, report_path)
        click.echo(f"evaluation written to {report_path}", err=True)
    for name, result in outcome.comparison.items():
        mae = result["p50_mae_hours"]
        cov = result["coverage_p10_p90"]
        click.echo(f"{name}: p50 MAE {mae / 24:.2f} days ({mae:.1f} h), p10-p90 coverage "
                   f"{cov:.0%} on {result['rows']} test snapshots" if mae is not None
                   else f"{name}: no test snapshots")
    click.echo(f"{outcome.version}: {'promoted' if outcome.promoted else 'not promoted'} "
               f"({outcome.reason})")


@main.group()
def models() -> None:
    """The ETA model registry."""


@models.command("list")
def models_list() -> None:
    """Registered models, their status and headline metrics."""
    from service.store import eta_models

    settings = resolved(cli_settings())

    rows = run(lambda: with_db(settings, eta_models.list_all))
    if not rows:
        click.echo("no models yet: run `parcelcast train`")
    for row in rows:
        own = (row.metrics or {}).get("comparison", {}).get(row.version, {})
        mae = own.get("p50_mae_hours")
        cov = own.get("coverage_p10_p90")
        figures = (f"p50 MAE {mae:.1f} h, coverage {cov:.0%}" if mae is not None and cov
                   is not None else "no evaluation")
        click.echo(f"{row.version}\t{row.status}\t{figures}\t"
                   f"trained {row.created_at:%Y-%m-%d %H:%M}")


def _promote(version: str | None, reason: str) -> str:
    from service.store import eta_models

    settings = resolved(cli_settings())

    async def promote(conn: Any) -> str:
        target = version or await eta_models.previous_champion(conn)
        if target is None:
            raise click.ClickException("there is no previous champion to roll back to")
        if not await eta_models.promote(conn, target, reason, settings.clock().now()):
            raise click.ClickException(f"no model {target!r}; see `parcelcast models list`")
        return target

    return run(lambda: with_db(settings, promote))


@models.command("promote")
@click.argument("version")
def models_promote(version: str) -> None:
    """Make VERSION the champion (running services pick it up within seconds)."""
    click.echo(f"{_promote(version, 'promoted by an operator')} is now the champion")


@models.command("rollback")
def models_rollback() -> None:
    """Return to the champion before the current one."""
    click.echo(f"rolled back: {_promote(None, 'rollback')} is now the champion")


@models.command("recalibrate")
def models_recalibrate() -> None:
    """Recompute the champion's p10-p90 window from the recent deliveries now (workers do it
    every RECALIBRATE_EVERY_HOURS)."""
    from workers.recalibration import recalibrate_champion

    settings = resolved(cli_settings())
    done = run(lambda: with_db(
        settings, lambda conn: recalibrate_champion(conn, settings.clock().now())))
    if done is None:
        raise click.ClickException("no champion or no history: run `parcelcast train` first")
    factors = ", ".join(f"{k} {v:+.3f}" for k, v in sorted(done.factors.items()))
    click.echo(f"{done.version} recalibrated as of {done.as_of.isoformat()}"
               f"{'' if done.stored else ' (already was)'}: {factors}")


