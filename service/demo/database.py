"""The demo's own database, and the note that makes it the CLI's default afterwards.

`parcelcast demo` creates `parcelcast_demo_<seed>` on the configured (or embedded) server.
On the embedded server (DATABASE_URL unset) it writes that name to `<data dir>/demo-database`,
and every `parcelcast` command then uses that database until `parcelcast demo --clean`
drops it, so the README's next steps (`keys create`, `models list`, `serve`) see the demo's
data. A DATABASE_URL that is set always wins; the demo prints the `export` line instead.
Light on imports: every CLI command reads the note.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "parcelcast_demo_"
NOTE = "demo-database"


def name_for(seed: int) -> str:
    return f"{PREFIX}{seed}"


def remembered(data_dir: Path) -> str | None:
    """The demo database the CLI uses by default, if a demo left one."""
    try:
        name = (data_dir / NOTE).read_text().strip()
    except FileNotFoundError:
        return None
    return name if name.startswith(PREFIX) and name[len(PREFIX):].lstrip("-").isdigit() else None


def remember(data_dir: Path, name: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / NOTE).write_text(name + "\n")


def forget(data_dir: Path) -> None:
    (data_dir / NOTE).unlink(missing_ok=True)


def _maintenance(server_url: str) -> str:
    """The server's `postgres` database: never a demo's, which could not drop itself."""
    from service.store.embedded import with_database

    return with_database(server_url, "postgres")


async def create_fresh(server_url: str, name: str) -> str:
    """Drop and create `name` on the server of `server_url`; its URL."""
    import asyncpg

    from service.store.embedded import with_database

    admin = await asyncpg.connect(_maintenance(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(server_url, name)


async def drop_all(server_url: str) -> list[str]:
    """Drop every demo database on the server of `server_url`; their names."""
    import asyncpg

    admin = await asyncpg.connect(_maintenance(server_url))
    try:
        names = [r["datname"] for r in await admin.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
            PREFIX)]
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return names
