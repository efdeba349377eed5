"""Carrier vocabulary: substatuses, unknown codes counted, tracker states, normalized numbers.

- `tracking_events.substatus`, `shipments.substatus`: the finer meaning of a status from the
  carrier tables (e.g. delivered + signature_obtained); a shipment's follows its status event.
- `carrier_unknown_codes`: per carrier and raw code that no table maps, how many events,
  first/last seen and a sample description (`parcelcast carriers unknown`).
- `tracker_states`: what an aggregator says about its tracker rather than the parcel
  (EasyPost `error`, AfterShip `Expired`/`Pending`), per carrier, tracking number and source.
- Tracking numbers are stored normalized (upper case, no spaces or dashes; see
  service.tracking.numbers): existing rows are rewritten where that collides with nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from alembic import op
from service.store.migrations import statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


SCHEMA = """
        ALTER TABLE tracking_events ADD COLUMN substatus text;
        ALTER TABLE shipments ADD COLUMN substatus text;

        CREATE TABLE carrier_unknown_codes (
            carrier             text NOT NULL,
            code                text NOT NULL,
            events              bigint NOT NULL,
            first_seen_at       timestamptz NOT NULL,
            last_seen_at        timestamptz NOT NULL,
            sample_description  text,
            PRIMARY KEY (carrier, code)
        );

        CREATE TABLE tracker_states (
            carrier          text NOT NULL,
            tracking_number  text NOT NULL,
            source           text NOT NULL,
            state            text NOT NULL,
            detail           text,
            message          text,
            stated_at        timestamptz,
            updated_at       timestamptz NOT NULL,
            PRIMARY KEY (carrier, tracking_number, source)
        );

        UPDATE tracking_events SET tracking_number = upper(translate(tracking_number, ' -', ''))
        WHERE tracking_number <> upper(translate(tracking_number, ' -', ''));

        UPDATE shipments s SET tracking_number = upper(translate(s.tracking_number, ' -', ''))
        WHERE s.tracking_number <> upper(translate(s.tracking_number, ' -', ''))
          AND NOT EXISTS (
              SELECT 1 FROM shipments o
              WHERE o.carrier = s.carrier AND o.shipment_id <> s.shipment_id
                AND upper(translate(o.tracking_number, ' -', ''))
                    = upper(translate(s.tracking_number, ' -', '')))
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE tracker_states")
    op.execute("DROP TABLE carrier_unknown_codes")
    op.execute("ALTER TABLE shipments DROP COLUMN substatus")
    op.execute("ALTER TABLE tracking_events DROP COLUMN substatus")
