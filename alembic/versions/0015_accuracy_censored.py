"""Live accuracy scores the late parcels too: a shown window whose date passed without a
delivery is a miss as soon as the date has passed (a censored score), not weeks later
when the parcel arrives.

`eta_scores` gains ``judged_at``: when the shown ETA's outcome was known, the delivery for
a parcel delivered by the end of the date shown (the p90's local date), else the end of
that date; every rolling figure counts the scores judged in its window. ``censored``: the
parcel was still out when judged and still is (``delivered_at`` NULL, the error a lower
bound: the time from the p50 to the latest check). The delivery's own scoring then fills
in the delivery and the true error; the score stays judged when the date passed.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28
"""

from alembic import op
from service.store.migrations import statements

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


SCHEMA = """
        ALTER TABLE eta_scores
            ALTER COLUMN delivered_at DROP NOT NULL,
            ADD COLUMN judged_at timestamptz,
            ADD COLUMN censored boolean NOT NULL DEFAULT false;
        UPDATE eta_scores SET judged_at = delivered_at;
        ALTER TABLE eta_scores ALTER COLUMN judged_at SET NOT NULL;
        ALTER TABLE eta_scores ADD CONSTRAINT eta_scores_censored_still_out
            CHECK (censored = (delivered_at IS NULL));
        DROP INDEX eta_scores_delivered;
        DROP INDEX eta_scores_version;
        CREATE INDEX eta_scores_judged ON eta_scores (judged_at);
        CREATE INDEX eta_scores_version ON eta_scores (model_version, judged_at);
        CREATE INDEX eta_scores_still_out ON eta_scores (judged_at) WHERE censored
"""


def upgrade() -> None:
    for statement in statements(SCHEMA):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements("""
        DELETE FROM eta_scores WHERE censored;
        DROP INDEX eta_scores_still_out;
        DROP INDEX eta_scores_version;
        DROP INDEX eta_scores_judged;
        ALTER TABLE eta_scores DROP CONSTRAINT eta_scores_censored_still_out,
            DROP COLUMN censored, DROP COLUMN judged_at,
            ALTER COLUMN delivered_at SET NOT NULL;
        CREATE INDEX eta_scores_delivered ON eta_scores (delivered_at);
        CREATE INDEX eta_scores_version ON eta_scores (model_version, delivered_at)
    """):
        op.execute(statement)
