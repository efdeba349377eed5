"""Vacuum and analyze by hand, on a server whose autovacuum is off.

Parcelcast's hot tables are tuned for autovacuum (migration 0011: vacuum `work_items` after
2,000 dead rows, ...). With `autovacuum = off` on the server (some CI and benchmark machines
ship it so) nothing ever applies those settings, and the pipeline slows as it runs: every
hand-off leaves dead rows in `work_items` and its partial indexes, which the relay's claims
then read through, and no table is ever analyzed, so the planner keeps the statistics of the
empty tables it was migrated with and picks plans that read every notification of a state
(a send's claim read all the scheduled ones, its "last message sent" every sent one). See
docs/operations.md.

So the workers do autovacuum's job when the server does not: a table is vacuumed once its
dead rows pass autovacuum's own threshold for it, and analyzed once its changes since the
last analyze pass autovacuum's analyze threshold, with each table's storage parameters
(`ALTER TABLE ... SET (autovacuum_...)`, the migrations) or else the server's settings: the
thresholds have one home, the tables' settings, whoever applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

VACUUM_LOCK = 0x5641_4355  # arbitrary, fixed advisory-lock key: one vacuumer at a time


def _option(name: str) -> str:
    """A table's autovacuum storage parameter, else the server's setting of that name."""
    return (f"coalesce((SELECT option_value::float8 FROM pg_options_to_table(c.reloptions) "
            f"WHERE option_name = '{name}'), current_setting('{name}')::float8)")


# autovacuum's rule (PostgreSQL's autovacuum.c, relation_needs_vacanalyze), per table:
# vacuum when dead rows > threshold + scale factor * rows; analyze when rows changed since
# the last analyze > analyze threshold + analyze scale factor * rows.
DUE = f"""
SELECT s.relname AS name,
       s.n_dead_tup > {_option('autovacuum_vacuum_threshold')}
                      + {_option('autovacuum_vacuum_scale_factor')} * greatest(c.reltuples, 0)
           AS vacuum,
       s.n_mod_since_analyze > {_option('autovacuum_analyze_threshold')}
                      + {_option('autovacuum_analyze_scale_factor')} * greatest(c.reltuples, 0)
           AS analyze
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND c.relkind = 'r'
"""


@dataclass(frozen=True)
class Due:
    table: str
    vacuum: bool
    analyze: bool


async def autovacuum_on(conn: asyncpg.Connection) -> bool:
    setting: str = await conn.fetchval("SHOW autovacuum")
    return setting == "on"


async def due(conn: asyncpg.Connection) -> list[Due]:
    """The tables autovacuum would vacuum or analyze now, by its thresholds for each."""
    rows = await conn.fetch(DUE)
    return [Due(r["name"], r["vacuum"], r["analyze"]) for r in rows
            if r["vacuum"] or r["analyze"]]


async def run(conn: asyncpg.Connection, table: Due) -> None:
    """VACUUM and/or ANALYZE one table (outside any transaction, as VACUUM must be)."""
    what = "VACUUM (ANALYZE)" if table.vacuum and table.analyze else (
        "VACUUM" if table.vacuum else "ANALYZE")
    name = await conn.fetchval("SELECT quote_ident($1)", table.table)
    await conn.execute(f"{what} {name}")
