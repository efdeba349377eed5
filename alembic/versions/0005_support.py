"""Support: the agents' audit log, muted orders, shipments declared lost, search indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op
from service.store.migrations import statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


SCHEMA = """
        -- Every support action: who (an API key id, or proxy:<user>), when, what, and why.
        CREATE TABLE support_actions (
            id               bigserial PRIMARY KEY,
            order_id         text NOT NULL,
            shipment_id      text,
            notification_id  bigint,
            action           text NOT NULL CHECK (action IN ('resend', 'mute', 'unmute',
                                                            'mark_lost', 'mark_delivered')),
            actor            text NOT NULL,
            note             text NOT NULL DEFAULT '',
            detail           jsonb NOT NULL DEFAULT '{}',
            created_at       timestamptz NOT NULL
        );
        CREATE INDEX support_actions_order ON support_actions (order_id, created_at DESC, id DESC);

        -- An order an agent muted: nothing more is sent about it (an agent's resend excepted).
        CREATE TABLE order_mutes (
            order_id  text PRIMARY KEY,
            muted_at  timestamptz NOT NULL,
            actor     text NOT NULL,
            note      text NOT NULL DEFAULT ''
        );

        -- Declared lost by an agent: no more ETAs, sweeps or messages until a carrier's
        -- final scan (or an agent) says otherwise.
        ALTER TABLE shipments ADD COLUMN lost_at timestamptz;

        -- An order's notifications (muting drops the waiting ones).
        CREATE INDEX notifications_order ON notifications (order_id);

        -- Agent search, newest first. The tracking-number expression is
        -- service.tracking.numbers.NORMALIZED_SQL (issue 12 may bring a stored column).
        CREATE INDEX shipments_newest ON shipments (created_at DESC, shipment_id DESC);
        CREATE INDEX shipments_tracking_number_normalized
            ON shipments ((upper(translate(tracking_number, ' -', ''))));
        CREATE INDEX orders_customer_email_lower ON orders ((lower(customer_email)));
        CREATE INDEX orders_customer_phone ON orders (customer_phone);
        CREATE INDEX orders_customer_name_prefix ON orders ((lower(customer_name)) text_pattern_ops)
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX notifications_order, orders_customer_name_prefix, orders_customer_phone, "
               "orders_customer_email_lower, shipments_tracking_number_normalized, "
               "shipments_newest")
    op.execute("ALTER TABLE shipments DROP COLUMN lost_at")
    op.execute("DROP TABLE order_mutes, support_actions")
