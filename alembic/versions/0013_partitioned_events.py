"""Tracking events partitioned by month of storing (issue 15), their dedupe keys in a registry.

- `tracking_events` becomes a table PARTITIONED BY RANGE (received_at): one partition per
  UTC month (`tracking_events_pYYYY_MM`) and a DEFAULT partition (`tracking_events_default`)
  for rows stored in a month that has none yet (`parcelcast maintenance` moves them out).
  The partition key is when the row was stored (the service clock), never the scan's own
  time: every insert lands in the current month, late and replayed scans included, and the
  scan times the API accepts (1970-2100) are stored exactly as before.
- A unique index on a partitioned table must contain the partition key, and an event's
  identity (its dedupe key: the carrier's event id, or a hash of the scan) has no storing
  time in it. So the keys live in `tracking_event_keys` (dedupe_key PRIMARY KEY -> event id
  and its received_at, the partition it is in), which ingest claims first; a replay months
  later is recognised there. `tracking_events.dedupe_key` stays as a copy (not unique).
- `tracking_events` keeps `id` (now PRIMARY KEY (id, received_at)), the sequence and the
  shipment index `(carrier, tracking_number, occurred_at)`, created on every partition.
  There are no foreign keys, triggers or views on the table to recreate.

Upgrade rewrites the table (rows copied partition by partition): run it with the service
stopped. Downgrade rebuilds the single table with its unique dedupe key.

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-27
"""

from datetime import UTC, datetime

from sqlalchemy import text

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ("id, dedupe_key, carrier, tracking_number, carrier_event_id, status, status_rank, "
           "raw_code, description, location, occurred_at, received_at, payload, substatus, "
           "time_basis")
# Months past the current one given a partition now; `parcelcast maintenance` keeps ahead.
AHEAD = 3

UP = """
        ALTER TABLE tracking_events RENAME TO tracking_events_single;
        ALTER INDEX tracking_events_pkey RENAME TO tracking_events_single_pkey;
        ALTER INDEX tracking_events_dedupe_key_key RENAME TO tracking_events_single_key;
        ALTER INDEX tracking_events_shipment RENAME TO tracking_events_single_shipment;

        CREATE TABLE tracking_events (
            id               bigint NOT NULL DEFAULT nextval('tracking_events_id_seq'),
            dedupe_key       bytea NOT NULL,
            carrier          text NOT NULL,
            tracking_number  text NOT NULL,
            carrier_event_id text,
            status           text NOT NULL,
            status_rank      smallint NOT NULL,
            raw_code         text,
            description      text,
            location         jsonb,
            occurred_at      timestamptz NOT NULL,
            received_at      timestamptz NOT NULL,
            payload          jsonb NOT NULL,
            substatus        text,
            time_basis       text,
            PRIMARY KEY (id, received_at)
        ) PARTITION BY RANGE (received_at);
        CREATE INDEX tracking_events_shipment
            ON tracking_events (carrier, tracking_number, occurred_at);
        CREATE TABLE tracking_events_default PARTITION OF tracking_events DEFAULT;

        -- The identity of every stored event: claimed before the event is stored.
        CREATE TABLE tracking_event_keys (
            dedupe_key   bytea PRIMARY KEY,
            event_id     bigint NOT NULL,
            received_at  timestamptz NOT NULL   -- the event's partition key
        );
        -- Rows arrive in received_at order: a BRIN index finds an expired month's keys.
        CREATE INDEX tracking_event_keys_received ON tracking_event_keys
            USING brin (received_at)
"""

AFTER_COPY = """
        INSERT INTO tracking_event_keys (dedupe_key, event_id, received_at)
            SELECT dedupe_key, id, received_at FROM tracking_events_single;
        ALTER SEQUENCE tracking_events_id_seq OWNED BY tracking_events.id;
        DROP TABLE tracking_events_single;
        ANALYZE tracking_events;
        ANALYZE tracking_event_keys
"""

DOWN = f"""
        CREATE TABLE tracking_events_single (
            id               bigint NOT NULL DEFAULT nextval('tracking_events_id_seq')
                             PRIMARY KEY,
            dedupe_key       bytea NOT NULL UNIQUE,
            carrier          text NOT NULL,
            tracking_number  text NOT NULL,
            carrier_event_id text,
            status           text NOT NULL,
            status_rank      smallint NOT NULL,
            raw_code         text,
            description      text,
            location         jsonb,
            occurred_at      timestamptz NOT NULL,
            received_at      timestamptz NOT NULL,
            payload          jsonb NOT NULL,
            substatus        text,
            time_basis       text
        );
        INSERT INTO tracking_events_single ({COLUMNS})
            SELECT {COLUMNS} FROM tracking_events ORDER BY id
            ON CONFLICT (dedupe_key) DO NOTHING;
        ALTER SEQUENCE tracking_events_id_seq OWNED BY tracking_events_single.id;
        DROP TABLE tracking_event_keys;
        DROP TABLE tracking_events;
        ALTER TABLE tracking_events_single RENAME TO tracking_events;
        ALTER INDEX tracking_events_single_pkey RENAME TO tracking_events_pkey;
        ALTER INDEX tracking_events_single_dedupe_key_key
            RENAME TO tracking_events_dedupe_key_key;
        CREATE INDEX tracking_events_shipment
            ON tracking_events (carrier, tracking_number, occurred_at);
        ANALYZE tracking_events
"""


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _month_after(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _create_month(month: datetime) -> None:
    if month.year == 9999 and month.month == 12:
        return  # no month after it in Python: its rows stay in the default partition
    end = _month_after(month)
    op.execute(
        f"CREATE TABLE tracking_events_p{month.year:04d}_{month.month:02d} "
        f"PARTITION OF tracking_events FOR VALUES FROM ('{month.isoformat()}') "
        f"TO ('{end.isoformat()}')")


def upgrade() -> None:
    for statement in _statements(UP):
        op.execute(statement)
    bind = op.get_bind()
    # The months the stored rows were received in, and the next few by the database's
    # clock (`parcelcast maintenance` then keeps them coming by the service's clock).
    stored = bind.execute(text(
        "SELECT DISTINCT date_trunc('month', received_at, 'UTC') AS m "
        "FROM tracking_events_single")).scalars().all()
    now = bind.execute(text("SELECT date_trunc('month', now(), 'UTC')")).scalar_one()
    months = {m.astimezone(UTC) for m in stored}
    month = now.astimezone(UTC)
    for _ in range(AHEAD + 1):
        months.add(month)
        month = _month_after(month)
    for month in sorted(months):
        _create_month(month)
    op.execute(f"INSERT INTO tracking_events ({COLUMNS}) "
               f"SELECT {COLUMNS} FROM tracking_events_single")
    for statement in _statements(AFTER_COPY):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWN):
        op.execute(statement)
