"""An outbox that stays fast under churn.

- The relay's claims read only due rows, through partial indexes: pending items by
  `run_after`, handed-over items by `enqueued_at` (the old `(state, run_after)` index read
  every enqueued row on the way).
- Leases: a job takes its items (`leased_by` = its arq job id, `leased_until`) before working
  on them and renews the lease while it works; the relay hands an item over again only when
  its lease ran out (the worker died) or, never leased, when arq no longer has its job
  (`job_id`). Being older than PARCELCAST_STALE_AFTER_S is no longer enough.
- `shipment_etas.stored_at`: when the row was written (the database's real clock), so the
  time from a scan to its shipment's new ETA can be measured (bench/bench_pipeline.py). Added
  without a default first, so existing rows are not rewritten.
- Autovacuum for the tables updated on every scan: vacuumed after a fixed number of dead
  rows, not a fraction of the table, and without cost-based pauses (docs/operations.md).

Revision ID: 0011
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
from service.store.migrations import statements

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


SCHEMA = """
        ALTER TABLE work_items
            ADD COLUMN job_id        text,          -- the arq job it was last handed over in
            ADD COLUMN leased_by     text,          -- the arq job working on it
            ADD COLUMN leased_until  timestamptz;   -- ... while this is in the future

        ALTER TABLE shipment_etas ADD COLUMN stored_at timestamptz;
        ALTER TABLE shipment_etas ALTER COLUMN stored_at SET DEFAULT clock_timestamp();

        DROP INDEX work_items_due;
        CREATE INDEX work_items_pending_due ON work_items (run_after, id)
            WHERE state = 'pending';
        CREATE INDEX work_items_enqueued_since ON work_items (enqueued_at)
            WHERE state = 'enqueued';

        -- Every item is inserted, updated once or twice and deleted within seconds: vacuum
        -- after a fixed number of dead rows, at once, and keep room on each page for
        -- updates that stay on it (HOT).
        ALTER TABLE work_items SET (
            fillfactor = 70,
            autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
            autovacuum_vacuum_insert_scale_factor = 0,
            autovacuum_vacuum_insert_threshold = 10000,
            autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
            autovacuum_vacuum_cost_delay = 0);
        -- Shipments are updated on every scan (derived state, then the ETA pointer);
        -- notifications on every send.
        ALTER TABLE shipments SET (
            fillfactor = 80,
            autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 5000,
            autovacuum_analyze_scale_factor = 0.05,
            autovacuum_vacuum_cost_delay = 0);
        ALTER TABLE notifications SET (
            fillfactor = 80,
            autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 5000,
            autovacuum_vacuum_cost_delay = 0)
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE notifications RESET (fillfactor, autovacuum_vacuum_scale_factor, "
               "autovacuum_vacuum_threshold, autovacuum_vacuum_cost_delay)")
    op.execute("ALTER TABLE shipments RESET (fillfactor, autovacuum_vacuum_scale_factor, "
               "autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, "
               "autovacuum_vacuum_cost_delay)")
    op.execute("ALTER TABLE work_items RESET (fillfactor, autovacuum_vacuum_scale_factor, "
               "autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor, "
               "autovacuum_vacuum_insert_threshold, autovacuum_analyze_scale_factor, "
               "autovacuum_analyze_threshold, autovacuum_vacuum_cost_delay)")
    op.execute("ALTER TABLE shipment_etas DROP COLUMN stored_at")
    op.execute("DROP INDEX work_items_enqueued_since")
    op.execute("DROP INDEX work_items_pending_due")
    op.execute("CREATE INDEX work_items_due ON work_items (state, run_after)")
    op.execute("ALTER TABLE work_items DROP COLUMN leased_until, DROP COLUMN leased_by, "
               "DROP COLUMN job_id")
