"""`parcelcast`: the one command-line entry point."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from service.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.parcelcast_log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def _resolved(settings: Settings) -> Settings:
    """Settings with DATABASE_URL / REDIS_URL filled in, starting embedded stores if unset."""
    from service.stores import resolve_stores

    urls = resolve_stores(settings)
    if urls.embedded_postgres or urls.embedded_redis:
        which = [n for n, e in (("PostgreSQL", urls.embedded_postgres),
                                ("Redis", urls.embedded_redis)) if e]
        click.echo(f"using embedded {' and '.join(which)} in {settings.data_dir}", err=True)
    return settings.model_copy(update={"database_url": urls.database_url,
                                       "redis_url": urls.redis_url})


def _database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise click.ClickException("setting DATABASE_URL is missing")
    return settings.database_url


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(conn)` on a fresh connection to the configured database."""
    from service.db.pool import connect

    conn = await connect(_database_url(settings))
    try:
        return await work(conn)
    finally:
        await conn.close()


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    from service.migrations import SchemaBehind

    async def main() -> T:
        return await coro_fn()

    try:
        return asyncio.run(main())
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach a store: {exc}") from None


@click.group()
def main() -> None:
    """Parcelcast: honest ETAs and proactive delivery notifications."""


@main.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest."""
    from service.migrations import head_revision, upgrade

    settings = _resolved(_settings())
    upgrade(_database_url(settings))
    click.echo(f"database is at migration {head_revision()}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run the HTTP API."""
    from aiohttp import web

    from service.app import create_app

    settings = _resolved(_settings())
    app = create_app(settings, settings.clock())
    from service.migrations import SchemaBehind

    try:
        web.run_app(app, host=host, port=port, access_log=None,
                    print=lambda msg: click.echo(msg, err=True))
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(burst: bool) -> None:
    """Run the relay and an arq worker."""
    import signal

    from workers.main import run_worker

    settings = _resolved(_settings())

    async def work() -> None:
        from workers.main import DRAIN_SECONDS

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.create_task(run_worker(settings, settings.clock(), burst=burst,
                                                 stop=stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            stopping.cancel()
            running.result()
            return
        # Draining has its own limit; this one bounds everything else (closing pools).
        try:
            await asyncio.wait_for(running, DRAIN_SECONDS + 15)
        except (TimeoutError, asyncio.CancelledError):
            click.echo("worker: did not stop in time; exiting anyway", err=True)

    _run(work)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["events:write", "shipments:read", "admin"]))
@click.option("--name", default="", help="A label to recognise the key by.")
def keys_create(scopes: tuple[str, ...], name: str) -> None:
    """Create a key; it is shown once and stored only as a hash."""
    from service.auth import new_key
    from service.db import api_keys

    settings = _resolved(_settings())

    async def create(conn: Any) -> str:
        key_id, key, key_hash = new_key()
        await api_keys.create(conn, key_id, key_hash, sorted(set(scopes)), name,
                              settings.clock().now())
        return key

    key = _run(lambda: _with_db(settings, create))
    click.echo(key)
    click.echo(f"scopes: {', '.join(sorted(set(scopes)))} (store it now: it is not shown again)",
               err=True)


@keys.command("list")
def keys_list() -> None:
    """List keys (ids and scopes, never the secrets)."""
    from service.db import api_keys

    settings = _resolved(_settings())

    for row in _run(lambda: _with_db(settings, api_keys.list_all)):
        state = "revoked" if row["revoked_at"] else "active"
        click.echo(f"{row['key_id']}\t{state}\t{','.join(row['scopes'])}\t{row['name']}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (the 8 characters after pc_)."""
    from service.db import api_keys

    settings = _resolved(_settings())

    async def revoke(conn: Any) -> bool:
        return await api_keys.revoke(conn, key_id, settings.clock().now())

    if not _run(lambda: _with_db(settings, revoke)):
        raise click.ClickException(f"no active key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


def _instant(text: str | None, option: str) -> Any:
    """A date (midnight UTC) or an ISO 8601 time with an offset; naive times are refused."""
    from datetime import UTC, date, datetime

    if text is None:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date or ISO 8601 time",
                                 param_hint=option) from None
    if value.tzinfo is None:
        raise click.BadParameter("give a timezone offset, e.g. 2026-11-01T00:00:00+00:00",
                                 param_hint=option)
    return value


def _progress_bar(total: float, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", leave=True, disable=None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")


@main.command()
@click.option("--rounds", type=click.IntRange(10, 5000), default=None,
              help="Boosting rounds (default: the predictor's).")
@click.option("--until", default=None,
              help="Train on shipments labelled before this: a date (UTC midnight) or an ISO "
                   "time with an offset (default: now).")
@click.option("--report", "report_path", type=click.Path(file_okay=False), default=None,
              help="Also write the evaluation (JSON + PNG plots) to this folder.")
def train(rounds: int | None, until: Any, report_path: str | None) -> None:
    """Train an ETA model on the history in the database, register it, and promote it if
    it beats the champion on the same evaluation data."""
    from service.training import train_and_register

    until = _instant(until, "--until")
    settings = _resolved(_settings())
    bar = _progress_bar(100, "training")

    def progress(stage: str, fraction: float) -> None:
        bar.n = round(fraction * 100)
        bar.set_postfix_str(stage)
        bar.refresh()

    async def run_training(conn: Any) -> Any:
        return await train_and_register(conn, settings.clock().now(), until=until,
                                        rounds=rounds, progress=progress)

    try:
        outcome = _run(lambda: _with_db(settings, run_training))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    if report_path:
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
        settings = _resolved(_settings())
        counts = _run(lambda: _load_frames(settings, history.orders, history.shipments,
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
    from service.db.history import load_history
    from service.db.pool import connect

    bar = _progress_bar(len(shipments) + len(events) + (0 if orders is None else len(orders)),
                        "loading")
    conn = await connect(_database_url(settings))
    try:
        return await load_history(conn, orders, shipments, events, settings.clock().now(),
                                  progress=lambda n: (bar.update(n), bar.refresh()))
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
    settings = _resolved(_settings())
    counts = _run(lambda: _load_frames(settings, None, shipments, events))
    click.echo(f"imported {counts['shipments']} shipments and {counts['events']} events; "
               f"{len(errors)} bad lines skipped")


@main.group()
def models() -> None:
    """The ETA model registry."""


@models.command("list")
def models_list() -> None:
    """Registered models, their status and headline metrics."""
    from service.db import eta_models

    settings = _resolved(_settings())

    rows = _run(lambda: _with_db(settings, eta_models.list_all))
    if not rows:
        click.echo("no models yet: run `parcelcast train`")
    for row in rows:
        own = (row["metrics"] or {}).get("comparison", {}).get(row["version"], {})
        mae = own.get("p50_mae_hours")
        cov = own.get("coverage_p10_p90")
        figures = (f"p50 MAE {mae:.1f} h, coverage {cov:.0%}" if mae is not None and cov
                   is not None else "no evaluation")
        click.echo(f"{row['version']}\t{row['status']}\t{figures}\t"
                   f"trained {row['created_at']:%Y-%m-%d %H:%M}")


def _promote(version: str | None, reason: str) -> str:
    from service.db import eta_models

    settings = _resolved(_settings())

    async def promote(conn: Any) -> str:
        target = version or await eta_models.previous_champion(conn)
        if target is None:
            raise click.ClickException("there is no previous champion to roll back to")
        if not await eta_models.promote(conn, target, reason, settings.clock().now()):
            raise click.ClickException(f"no model {target!r}; see `parcelcast models list`")
        return target

    return _run(lambda: _with_db(settings, promote))


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
    from service.calibrating import recalibrate_champion

    settings = _resolved(_settings())
    done = _run(lambda: _with_db(
        settings, lambda conn: recalibrate_champion(conn, settings.clock().now())))
    if done is None:
        raise click.ClickException("no champion or no history: run `parcelcast train` first")
    factors = ", ".join(f"{k} {v:+.3f}" for k, v in sorted(done.factors.items()))
    click.echo(f"{done.version} recalibrated as of {done.as_of.isoformat()}"
               f"{'' if done.stored else ' (already was)'}: {factors}")


@main.group()
def notifications() -> None:
    """Inspect and re-queue notifications that could not be sent."""


@notifications.command("rules")
@click.argument("moment", required=False)
@click.option("--channels", default=None, help="Comma-separated: email,sms.")
@click.option("--off", is_flag=True, help="Turn the moment off.")
def notifications_rules(moment: str | None, channels: str | None, off: bool) -> None:
    """Show which moments notify on which channels, or change one."""
    from service.db import notifications as notifications_db
    from workers.notify import MOMENTS

    settings = _resolved(_settings())
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

    rules = _run(lambda: _with_db(settings, apply))
    for name in MOMENTS:
        click.echo(f"{name}\t{','.join(rules[name]) if name in rules else 'off'}")


@notifications.command("failed")
def notifications_failed() -> None:
    """List dead-lettered (retries exhausted) and permanently failed notifications."""
    from service.db import notifications as notifications_db

    settings = _resolved(_settings())

    rows = _run(lambda: _with_db(settings, notifications_db.list_failed))
    if not rows:
        click.echo("no failed notifications")
    for row in rows:
        click.echo(f"{row['id']}\t{row['state']}\t{row['moment']}\t{row['channel']}\t"
                   f"{row['recipient']}\tattempts={row['attempts']}\t{row['last_error']}")


@notifications.command("retry")
@click.argument("notification_id", type=int)
def notifications_retry(notification_id: int) -> None:
    """Re-queue a failed or dead notification (a worker sends it)."""
    from service.db import notifications as notifications_db

    settings = _resolved(_settings())

    async def retry(conn: Any) -> bool:
        async with conn.transaction():
            return await notifications_db.retry(conn, notification_id,
                                                settings.clock().now())

    if not _run(lambda: _with_db(settings, retry)):
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
    from workers.notify import MOMENTS, RenderError
    from workers.notify.preview import preview

    if moment not in MOMENTS:
        raise click.BadParameter(f"unknown moment; one of: {', '.join(MOMENTS)}",
                                 param_hint="MOMENT")
    try:
        text = preview(moment, channel, locale, out)
    except RenderError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(text)
    else:
        click.echo(f"wrote {out}", err=True)


@main.group()
def stores() -> None:
    """The embedded PostgreSQL and Redis in the data folder."""


@stores.command("stop")
def stores_stop() -> None:
    """Stop the embedded servers started in the data folder."""
    from service.stores import stop_embedded_postgres, stop_embedded_redis

    settings = _settings()
    pg = stop_embedded_postgres(settings.data_dir / "postgres")
    rd = stop_embedded_redis(settings.data_dir / "redis")
    click.echo(f"postgres: {'stopped' if pg else 'not running'}; "
               f"redis: {'stopped' if rd else 'not running'}")


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

    settings = _resolved(_settings())
    options = DemoOptions(shipments, days, speed or 0.0, seed, keep_running, rounds)
    try:
        result = _run(lambda: run_demo(settings, options))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        return
    if json_path:
        import json

        with open(json_path, "w") as handle:
            json.dump(result, handle, indent=2, default=str)


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

    after = _instant(since, "--since")
    settings = _resolved(_settings())

    async def run(conn: Any) -> Any:
        return await reprocess(conn, settings.clock().now(), source=source, since=after,
                               delivery=delivery, dry_run=dry_run)

    report = _run(lambda: _with_db(settings, run))
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


if __name__ == "__main__":
    main()
