"""ETA calibrations: the champion's window factors, recomputed daily from recent errors.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op
from service.store.migrations import statements

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


SCHEMA = """
        -- A model's artefact never changes; its calibration (predictor.calibration) follows
        -- the recent errors, one row per recalibration, the newest in force.
        CREATE TABLE eta_calibrations (
            id             bigserial PRIMARY KEY,
            model_version  text NOT NULL REFERENCES eta_models (version),
            as_of          timestamptz NOT NULL,
            factors        jsonb NOT NULL,
            info           jsonb NOT NULL DEFAULT '{}',
            created_at     timestamptz NOT NULL,
            UNIQUE (model_version, as_of)
        )
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE eta_calibrations")
