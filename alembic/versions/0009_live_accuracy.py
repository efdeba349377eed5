"""Live accuracy: every ETA shown for a delivered parcel, scored; and the champion's drift
checks (feature population stability and residuals against its own validation).

`eta_scores` holds one row per (shown ETA, kind): ``first`` (the first ETA shown),
``stage`` (the first shown at each stage), ``told`` (the one in force when a notification
went out). A delivered parcel is scored when its delivery is refreshed; the unique key makes
a replayed delivery score once.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
from service.store.migrations import statements

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


SCHEMA = """
        CREATE TABLE eta_scores (
            id              bigserial PRIMARY KEY,
            shipment_id     text NOT NULL,
            eta_id          bigint NOT NULL,
            kind            text NOT NULL CHECK (kind IN ('first', 'stage', 'told')),
            model_version   text NOT NULL,
            stage           text NOT NULL,
            carrier         text NOT NULL,
            service_level   text NOT NULL,
            lane            text NOT NULL,
            predicted_at    timestamptz NOT NULL,
            eta_p10         timestamptz NOT NULL,
            eta_p50         timestamptz NOT NULL,
            eta_p90         timestamptz NOT NULL,
            delivered_at    timestamptz NOT NULL,
            error_days      real NOT NULL,      -- delivered minus p50: > 0 came later
            abs_error_days  real NOT NULL,
            inside_window   boolean NOT NULL,   -- p10 <= delivered <= p90
            on_time_shown   boolean NOT NULL,   -- by the end of the date shown (p90, local)
            scored_at       timestamptz NOT NULL,
            UNIQUE (eta_id, kind)
        );
        CREATE INDEX eta_scores_delivered ON eta_scores (delivered_at);
        CREATE INDEX eta_scores_version ON eta_scores (model_version, delivered_at);

        CREATE TABLE eta_drift (
            id                  bigserial PRIMARY KEY,
            model_version       text NOT NULL,
            as_of               timestamptz NOT NULL,
            feature_psi         jsonb NOT NULL,     -- feature -> population stability index
            inputs              integer NOT NULL,   -- shipments whose inputs were compared
            scored              integer NOT NULL,   -- live scores behind the residual check
            live_mae_days       real,
            validation_mae_days real,
            live_coverage       real,
            validation_coverage real,
            alarms              text[] NOT NULL DEFAULT '{}',
            created_at          timestamptz NOT NULL,
            UNIQUE (model_version, as_of)
        )
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE eta_drift, eta_scores")
