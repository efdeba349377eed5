"""Real-world feeds (issue 12, part B): what trackers say before the shipment exists, the
rule a naive scan time was resolved by, Shopify's own update times, and data-quality counters.

`carrier_estimates`: the newest carrier estimate per tracking number, by the sender's own time
(`as_of`), whether or not the shipment exists yet; a shipment takes it when it arrives.

`tracking_events.time_basis`: how the scan's instant was found (offset | zip | postal_code |
city_region | region | country | city | origin | utc_default); NULL on rows stored before.

`orders.source_updated_at`, `shipments.source_updated_at`: the sender's `updated_at` of the
version stored; an older version delivered late changes nothing.

`feed_quality`: counters per (day, source, carrier, measure), upserted once per batch.

Data: stored EasyPost/AfterShip events are re-keyed to the identity the adapters now give a
scan (service.integrations.rekey), so the next tracker update does not store them again.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
from service.store.migrations import statements

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


SCHEMA = """
        CREATE TABLE carrier_estimates (
            carrier          text NOT NULL,
            tracking_number  text NOT NULL,
            delivery_date    date NOT NULL,
            source           text NOT NULL,
            as_of            timestamptz,
            received_at      timestamptz NOT NULL,
            PRIMARY KEY (carrier, tracking_number)
        );

        ALTER TABLE tracking_events ADD COLUMN time_basis text;
        ALTER TABLE orders ADD COLUMN source_updated_at timestamptz;
        ALTER TABLE shipments ADD COLUMN source_updated_at timestamptz;

        CREATE TABLE feed_quality (
            day      date NOT NULL,
            source   text NOT NULL,     -- api:<key id> | shopify | easypost | aftership
            carrier  text NOT NULL,     -- '' when the measure has no carrier
            measure  text NOT NULL,
            count    bigint NOT NULL,
            PRIMARY KEY (day, source, carrier, measure)
        )
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)
    _rekey()


def _rekey() -> None:
    """Run service.integrations.rekey on the migration's own asyncpg connection."""
    from sqlalchemy.util import await_only

    from service.integrations.rekey import rekey

    raw = op.get_bind().connection.driver_connection  # asyncpg.Connection
    await_only(rekey(raw))


def downgrade() -> None:
    op.execute("DROP TABLE feed_quality")
    op.execute("ALTER TABLE shipments DROP COLUMN source_updated_at")
    op.execute("ALTER TABLE orders DROP COLUMN source_updated_at")
    op.execute("ALTER TABLE tracking_events DROP COLUMN time_basis")
    op.execute("DROP TABLE carrier_estimates")
