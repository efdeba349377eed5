"""ETA model registry and history; notifications, opt-outs and per-moment rules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op
from service.store.migrations import statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE eta_models (
    version        text PRIMARY KEY,
    artefact       bytea NOT NULL,          -- booster + feature names + calibration, one blob
    feature_names  text[] NOT NULL,
    params         jsonb NOT NULL,
    metrics        jsonb NOT NULL,
    data_from      timestamptz,
    data_to        timestamptz,
    status         text NOT NULL DEFAULT 'candidate'
                   CHECK (status IN ('candidate', 'champion', 'retired')),
    created_at     timestamptz NOT NULL,
    promoted_at    timestamptz
);
CREATE UNIQUE INDEX eta_models_one_champion ON eta_models ((true)) WHERE status = 'champion';

-- Every promotion, so `parcelcast models rollback` knows what came before.
CREATE TABLE eta_model_promotions (
    id           bigserial PRIMARY KEY,
    version      text NOT NULL REFERENCES eta_models (version),
    previous     text REFERENCES eta_models (version),
    reason       text NOT NULL,
    promoted_at  timestamptz NOT NULL
);

-- Append-only: the first ETA a customer was shown is never overwritten.
CREATE TABLE shipment_etas (
    id             bigserial PRIMARY KEY,
    shipment_id    text NOT NULL,
    predicted_at   timestamptz NOT NULL,
    model_version  text NOT NULL,
    stage          text NOT NULL,
    eta_p10        timestamptz NOT NULL,
    eta_p50        timestamptz NOT NULL,
    eta_p90        timestamptz NOT NULL,
    prob_late      real,
    reasons        jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX shipment_etas_shipment ON shipment_etas (shipment_id, predicted_at);

ALTER TABLE shipments
    ADD COLUMN eta_id bigint,                   -- the latest row of shipment_etas
    ADD COLUMN eta_p10 timestamptz,
    ADD COLUMN eta_p50 timestamptz,
    ADD COLUMN eta_p90 timestamptz,
    ADD COLUMN shown_date date,                 -- the delivery date the customer was told
    ADD COLUMN pending_date date,               -- a new date seen once, waiting to be confirmed
    ADD COLUMN first_scan_at timestamptz;

CREATE TABLE notification_rules (
    moment    text PRIMARY KEY,
    enabled   boolean NOT NULL DEFAULT true,
    channels  text[] NOT NULL DEFAULT '{email,sms}'
);
INSERT INTO notification_rules (moment, channels) VALUES
    ('shipped', '{email}'),
    ('out_for_delivery', '{email,sms}'),
    ('delivered', '{email,sms}'),
    ('delivery_attempted', '{email,sms}'),
    ('available_for_pickup', '{email,sms}'),
    ('exception', '{email,sms}'),
    ('returned_to_sender', '{email}'),
    ('predicted_delay', '{email,sms}'),
    ('eta_revised', '{email}'),
    ('stalled', '{email}'),
    ('missed_promise', '{email,sms}');

-- One row per moment x channel of a shipment: the unique key is what makes
-- "at most once" true, whatever the queue does.
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    shipment_id     text NOT NULL,
    order_id        text NOT NULL,
    moment          text NOT NULL,
    moment_key      text NOT NULL DEFAULT '',
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       text NOT NULL,
    locale          text NOT NULL,
    state           text NOT NULL DEFAULT 'scheduled'
                    CHECK (state IN ('scheduled', 'sending', 'sent', 'failed', 'suppressed',
                                     'superseded', 'dead')),
    due_at          timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    sending_since   timestamptz,
    last_error      text,
    provider_id     text,
    provider_status text,
    subject         text,
    body            text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL,
    UNIQUE (shipment_id, moment, moment_key, channel)
);
CREATE INDEX notifications_state ON notifications (state, due_at);
CREATE INDEX notifications_provider_id ON notifications (provider_id);

CREATE TABLE opt_outs (
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    address     text NOT NULL,
    source      text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (channel, address)
);
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE opt_outs, notifications, notification_rules, shipment_etas, "
               "eta_model_promotions, eta_models")
    op.execute("ALTER TABLE shipments DROP COLUMN eta_id, DROP COLUMN eta_p10, "
               "DROP COLUMN eta_p50, DROP COLUMN eta_p90, DROP COLUMN shown_date, "
               "DROP COLUMN pending_date, DROP COLUMN first_scan_at")
