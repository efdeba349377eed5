"""Foundation: orders, shipments, tracking events, API keys, the work outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op
from service.store.migrations import statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


SCHEMA = """
        CREATE TABLE orders (
            order_id        text PRIMARY KEY,
            placed_at       timestamptz,
            customer_name   text,
            customer_email  text,
            customer_phone  text,              -- E.164
            locale          text NOT NULL DEFAULT 'en',
            timezone        text,              -- IANA name, e.g. America/Chicago
            email_consent   boolean NOT NULL DEFAULT true,
            sms_consent     boolean NOT NULL DEFAULT false,
            items           jsonb NOT NULL DEFAULT '[]',
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL
        );

        CREATE TABLE shipments (
            shipment_id             text PRIMARY KEY,
            -- No foreign key: the OMS may send a shipment before its order.
            order_id                text NOT NULL,
            carrier                 text NOT NULL,
            service_level           text NOT NULL,
            tracking_number         text NOT NULL,
            origin_postal_code      text,
            origin_country          text,
            destination_postal_code text,
            destination_country     text,
            weight_grams            integer,
            promised_delivery_date  date,
            label_created_at        timestamptz,
            shipped_at              timestamptz,
            status                  text NOT NULL DEFAULT 'label_created',
            status_rank             smallint NOT NULL DEFAULT 0,
            status_occurred_at      timestamptz,
            delivered_at            timestamptz,
            event_count             integer NOT NULL DEFAULT 0,
            last_event_at           timestamptz,
            derived_at              timestamptz,
            created_at              timestamptz NOT NULL,
            updated_at              timestamptz NOT NULL,
            UNIQUE (carrier, tracking_number)
        );
        CREATE INDEX shipments_order_id ON shipments (order_id);

        CREATE TABLE tracking_events (
            id               bigserial PRIMARY KEY,
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
            payload          jsonb NOT NULL
        );
        CREATE INDEX tracking_events_shipment
            ON tracking_events (carrier, tracking_number, occurred_at);

        CREATE TABLE api_keys (
            key_id      text PRIMARY KEY,        -- the public prefix shown in listings
            key_hash    bytea NOT NULL UNIQUE,   -- sha256 of the whole key
            scopes      text[] NOT NULL,
            name        text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL,
            revoked_at  timestamptz
        );

        -- The durable half of the queue: written in the same transaction as the
        -- change that needs follow-up, handed to arq by the relay, deleted when done.
        CREATE TABLE work_items (
            id           bigserial PRIMARY KEY,
            kind         text NOT NULL,
            subject_id   text NOT NULL,
            state        text NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'enqueued')),
            run_after    timestamptz NOT NULL,
            created_at   timestamptz NOT NULL,
            enqueued_at  timestamptz,
            handoffs     integer NOT NULL DEFAULT 0
        );
        -- At most one not-yet-handed-over item per subject and kind.
        CREATE UNIQUE INDEX work_items_one_pending
            ON work_items (kind, subject_id) WHERE state = 'pending';
        CREATE INDEX work_items_due ON work_items (state, run_after);
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE work_items, api_keys, tracking_events, shipments, orders")
