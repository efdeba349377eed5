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
    """Train an ETA model on the history in the database and register it: the first model
    is promoted; later ones are promoted if their holdout booster beats the champion on
    parcels neither was trained on, else run in shadow until judged on delivered parcels."""
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
    if dask_scheduler is not None:
        click.echo("no out-of-sample evaluation: training on a cluster fits no holdout "
                   "booster; a later model is judged in shadow on delivered parcels")
    elif report_path:
        from predictor.evaluate import write_report

        write_report(outcome.report, report_path)
        click.echo(f"evaluation written to {report_path}", err=True)
    own = (outcome.report.get("evaluation") or {}).get("overall", {}).get("model", {})
    if own.get("mae_hours") is not None:
        click.echo(f"evaluation (out of sample): p50 MAE {own['mae_hours'] / 24:.2f} days "
                   f"({own['mae_hours']:.1f} h), p10-p90 coverage "
                   f"{own['coverage_p10_p90']:.0%} on {own['n']} test snapshots")
    for name, result in outcome.comparison.items():
        mae = result["p50_mae_hours"]
        cov = result["coverage_p10_p90"]
        who = "holdout of the new model" if name == outcome.version else "champion"
        click.echo(f"{name} ({who}): p50 MAE {mae / 24:.2f} days ({mae:.1f} h), p10-p90 "
                   f"coverage {cov:.0%} on {result['parcels']} parcels labelled from "
                   f"{result['from'][:16]}" if mae is not None
                   else f"{name} ({who}): no delivered parcel labelled after both "
                        "models' training data")
    verdict = {"champion": "promoted", "shadow": "in shadow"}.get(outcome.status,
                                                                  "not promoted")
    click.echo(f"{outcome.version}: {verdict} ({outcome.reason})")


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




@models.command("accuracy")
@click.option("--by", "by", type=click.Choice(["carrier", "service", "lane", "week", "stage",
                                               "model"]), default="carrier", show_default=True,
              help="Group the scored ETAs by this.")
@click.option("--since", default=None,
              help="ETAs judged since this date or ISO time (default: the last 28 days).")
@click.option("--kind", type=click.Choice(["stage", "first", "told"]), default="stage",
              show_default=True,
              help="Which shown ETAs: the first at each stage, the very first, or the one in "
                   "force when the customer was told.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_accuracy(by: str, since: str | None, kind: str, as_json: bool) -> None:
    """Live accuracy of the ETAs shown (p50 MAE, p10-p90 coverage, on time by the date
    shown), judged at the delivery or, for a parcel still out when the date shown ended,
    then, as a miss ("out": how many are still out; their error counts up to now); and the
    champion's latest drift check."""
    from datetime import timedelta

    import msgspec

    from service.store import accuracy, eta_models

    settings = resolved(cli_settings())
    start = instant(since, "--since") or settings.clock().now() - timedelta(days=28)

    async def read(conn: Any) -> tuple[Any, Any, Any]:
        rows = await accuracy.accuracy_by(conn, by, start, kind)  # type: ignore[arg-type]
        version = await eta_models.champion_version(conn)
        drift = await accuracy.latest_drift(conn, version) if version else None
        return rows, version, drift

    rows, champion, drift = run(lambda: with_db(settings, read))
    if as_json:
        click.echo(msgspec.json.encode({
            "by": by, "since": start, "kind": kind, "champion": champion,
            "segments": rows, "drift": drift}).decode())
        return
    click.echo(f"live accuracy by {by}, judged since {start:%Y-%m-%d %H:%M} UTC "
               f"({kind} ETAs; champion {champion or 'none'})")
    if not rows:
        click.echo("nothing scored yet: ETAs are scored when their parcel is delivered, or "
                   "when the date shown passes without it")
    else:
        width = max(len(by), *(len(r.segment) for r in rows))
        click.echo(f"{by:<{width}}  {'scored':>7}  {'out':>5}  {'MAE d':>6}  {'cover':>6}  "
                   f"{'on time':>7}  {'bias d':>6}")
        for r in rows:
            click.echo(f"{r.segment:<{width}}  {r.scored:>7}  {r.still_out:>5}  "
                       f"{r.mae_days:>6.2f}  {r.coverage:>6.0%}  {r.on_time_shown:>7.0%}  "
                       f"{r.bias_days:>+6.2f}")
        if any(r.still_out for r in rows):
            click.echo("out: parcels still out after the date shown, counted as misses "
                       "(their MAE and bias up to the latest check: lower bounds)")
    if drift is None:
        click.echo("drift: no check yet")
        return
    worst = sorted(drift.feature_psi.items(), key=lambda kv: -kv[1])
    psi = ", ".join(f"{k} {v:.2f}" for k, v in worst) or "too few recent inputs"
    live = "n/a" if drift.live_mae_days is None else f"{drift.live_mae_days:.2f}"
    valid = "n/a" if drift.validation_mae_days is None else f"{drift.validation_mae_days:.2f}"
    click.echo(f"drift as of {drift.as_of:%Y-%m-%d %H:%M} UTC ({drift.model_version}): "
               f"feature PSI {psi}; live MAE {live} d vs validation {valid} d")
    click.echo(f"alarms: {', '.join(drift.alarms) if drift.alarms else 'none'}")


@models.command("report")
@click.argument("version")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Folder to write VERSION.html into.")
def models_report(version: str, out: str) -> None:
    """An HTML page about VERSION in production: MAE and coverage by week, calibration,
    error by segment, drift, and the model card."""
    from pathlib import Path

    from service.eta.report import report_data, write_report

    settings = resolved(cli_settings())
    data = run(lambda: with_db(settings, lambda conn: report_data(conn, version)))
    if data is None:
        raise click.ClickException(f"no model {version!r}; see `parcelcast models list`")
    click.echo(f"report written to {write_report(data, Path(out))}")
