"""Failed work: rows quarantined out of their batch, and sends that may have reached the
provider.

`failed_work` holds one row per piece of work (kind + subject) that failed on its own after
its batch was split: the error, how often it failed, and when it is tried again (a pending
work item waits for that time). The row goes when the work succeeds.

`notifications.uncertain_since`: an attempt that began at this time may have reached the
provider (it timed out, or the connection dropped after the request went out); until the
message is recorded as sent, every attempt asks the provider before sending.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op
from service.store.migrations import statements

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


SCHEMA = """
        CREATE TABLE failed_work (
            id               bigserial PRIMARY KEY,
            kind             text NOT NULL,
            subject_id       text NOT NULL,
            attempts         integer NOT NULL,
            error            text NOT NULL,     -- the exception, one line
            detail           text NOT NULL,     -- its traceback
            first_failed_at  timestamptz NOT NULL,
            last_failed_at   timestamptz NOT NULL,
            retry_at         timestamptz NOT NULL,
            UNIQUE (kind, subject_id)
        );

        ALTER TABLE notifications ADD COLUMN uncertain_since timestamptz
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE notifications DROP COLUMN uncertain_since")
    op.execute("DROP TABLE failed_work")
