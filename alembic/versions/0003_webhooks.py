"""Webhooks: raw deliveries kept for re-processing; the carrier's own delivery estimate.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op
from service.store.migrations import statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


SCHEMA = """
        -- Every signed delivery as received. (source, delivery_id) is the sender's delivery
        -- id (X-Shopify-Webhook-Id) or a sha256 of the raw body, so a resent delivery is
        -- detected before anything is written twice. Rejected ones are kept too, so they
        -- can be re-processed once the mapping learns what they needed.
        CREATE TABLE webhook_deliveries (
            id               bigserial PRIMARY KEY,
            source           text NOT NULL CHECK (source IN ('shopify', 'easypost', 'aftership')),
            delivery_id      text NOT NULL,
            topic            text,
            source_event_id  text,
            headers          jsonb NOT NULL DEFAULT '{}',
            body             bytea NOT NULL,
            received_at      timestamptz NOT NULL,
            outcome          text NOT NULL
                             CHECK (outcome IN ('processed', 'ignored', 'rejected')),
            detail           jsonb,
            attempts         integer NOT NULL DEFAULT 1,
            processed_at     timestamptz,
            UNIQUE (source, delivery_id)
        );
        CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
        CREATE INDEX webhook_deliveries_rejected ON webhook_deliveries (source, received_at)
            WHERE outcome = 'rejected';

        -- The carrier's own estimate: a baseline for the ETA model and a feature of it.
        ALTER TABLE shipments ADD COLUMN carrier_estimated_delivery date;
        ALTER TABLE shipments ADD COLUMN carrier_estimate_source text;
        -- When the sender made that estimate, so a late resend never replaces a newer one.
        ALTER TABLE shipments ADD COLUMN carrier_estimate_as_of timestamptz
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE shipments DROP COLUMN carrier_estimate_as_of, "
               "DROP COLUMN carrier_estimate_source, DROP COLUMN carrier_estimated_delivery")
    op.execute("DROP TABLE webhook_deliveries")
