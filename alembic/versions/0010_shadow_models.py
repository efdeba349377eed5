"""Shadow models: a challenger scores live traffic beside the champion, its ETAs stored but
never shown nor used for messages, until it is promoted or dropped; the model lifecycle's
decisions (promotion, rollback) are kept.

`shipment_etas.shadow`: true for a challenger's ETA. Only rows with shadow = false are
shown (shipments.eta_id never points at a shadow row); the accuracy scorer reads both.
`eta_models.status` gains 'shadow' (at most one) and 'rolled_back' (a champion that
degraded live and gave way to the previous one; never promoted again automatically).
`eta_models.validation_mae_hours`: the model's out-of-sample p50 MAE at training, what its
live accuracy is held against.

Revision ID: 0010
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
from service.store.migrations import statements

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


SCHEMA = """
        ALTER TABLE shipment_etas ADD COLUMN shadow boolean NOT NULL DEFAULT false;
        CREATE INDEX shipment_etas_shadow ON shipment_etas (model_version, shipment_id)
            WHERE shadow;
        ALTER TABLE eta_models DROP CONSTRAINT eta_models_status_check;
        ALTER TABLE eta_models ADD CONSTRAINT eta_models_status_check
            CHECK (status IN ('candidate', 'champion', 'retired', 'shadow', 'rolled_back'));
        CREATE UNIQUE INDEX eta_models_one_shadow ON eta_models ((true))
            WHERE status = 'shadow';
        ALTER TABLE eta_models ADD COLUMN validation_mae_hours double precision
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DELETE FROM shipment_etas WHERE shadow")
    op.execute("ALTER TABLE shipment_etas DROP COLUMN shadow")
    op.execute("UPDATE eta_models SET status = 'retired' "
               "WHERE status IN ('shadow', 'rolled_back')")
    op.execute("DROP INDEX eta_models_one_shadow")
    op.execute("ALTER TABLE eta_models DROP COLUMN validation_mae_hours")
    op.execute("ALTER TABLE eta_models DROP CONSTRAINT eta_models_status_check")
    op.execute("ALTER TABLE eta_models ADD CONSTRAINT eta_models_status_check "
               "CHECK (status IN ('candidate', 'champion', 'retired'))")
