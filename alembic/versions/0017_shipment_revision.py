"""`shipments.revision` and `shipments.eta_revision`: which ETA a shipment shows is decided by
what each ETA was predicted from, not by the clocks of the processes that predicted them.

A refresh reads a shipment's inputs (its OMS fields, its carrier's estimate, its scans) and
stores an ETA later. Two refreshes of one shipment can overlap (a scan arrives while the
first runs; a job is handed over twice), and they run in different processes, often on
different hosts, whose clocks differ by milliseconds or more. Ordered by their clocks, a
refresh that read the shipment before its first scan, on a host whose clock runs ahead,
hid the ETA predicted from that scan (seen in the worker-kill drill).

- ``revision``: counts the changes to a shipment's inputs; every statement that changes
  them adds one (the ingest fold, the OMS upsert and merge, a carrier estimate), in the
  same statement as the change, so a refresh reads it in the snapshot it reads the inputs
  from.
- ``eta_revision``: the revision the shown ETA (``eta_id``) was predicted from. An ETA from
  an older revision never replaces one from a newer; at the same revision the later
  prediction wins, as before (service/store/etas.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: no table rewrite. The ETAs shown so far keep a NULL eta_revision,
    # which the next refresh of each shipment replaces by its predicted-at rule.
    op.execute("ALTER TABLE shipments ADD COLUMN revision bigint NOT NULL DEFAULT 0, "
               "ADD COLUMN eta_revision bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE shipments DROP COLUMN revision, DROP COLUMN eta_revision")
