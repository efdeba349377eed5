"""`shipments.eta_predicted_at`: when the ETA a shipment shows (`eta_id`) was predicted, on
the shipment row itself.

A refresh stores its ETA in one statement that appends the ETA and points the shipment at
it unless the shipment already shows a newer one (a refresh that ran late, handed over
twice, never hides a newer ETA). With the instant on the row, that check is on the row the
statement updates, and PostgreSQL re-checks it on the row's newest version after waiting
for its lock: no separate locking statement is needed (service/store/etas.py). Set
wherever `eta_id` is set, and backfilled here from the ETA each shipment shows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE shipments ADD COLUMN eta_predicted_at timestamptz")
    op.execute("""UPDATE shipments s SET eta_predicted_at = e.predicted_at
                  FROM shipment_etas e WHERE e.id = s.eta_id""")


def downgrade() -> None:
    op.execute("ALTER TABLE shipments DROP COLUMN eta_predicted_at")
