"""Applying Alembic migrations, and checking that a database is not behind the code."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
from alembic.config import Config
from alembic.script import ScriptDirectory

from alembic import command
from service.settings import REPO_ROOT


class SchemaBehind(Exception):
    """The database is not at the code's migration head."""


def sqlalchemy_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql+asyncpg", *parts[1:]))


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (blocking; run it off the event loop)."""
    command.upgrade(alembic_config(database_url), revision)


async def current_revision(conn: asyncpg.Connection) -> str | None:
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    return await conn.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]


async def ensure_current(conn: asyncpg.Connection) -> None:
    """Raise SchemaBehind, naming the command to run, unless the schema is at head."""
    current, head = await current_revision(conn), head_revision()
    if current != head:
        raise SchemaBehind(
            f"database schema is at {current or 'nothing'} but this code needs {head}: "
            "run `parcelcast migrate`"
        )




def statements(script: str) -> list[str]:
    """Split a plain DDL script into statements (asyncpg prepares one at a time).

    Only for scripts without dollar-quoted bodies; comments are dropped first.
    """
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
