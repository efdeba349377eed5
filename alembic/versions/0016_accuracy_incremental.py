"""Live accuracy's judging in proportion to what changed.

- ``shipment_etas_p90``: the shown ETAs by p90, so each poll reads only those whose p90
  passed since the previous poll (less a day: a date shown ends within a day of its p90),
  not every ETA of every parcel in flight.
- ``accuracy_checks``: one row, the instant of the latest judging poll (its watermark). A
  censored miss's error (a lower bound: the time from its p50 to the latest check) is
  computed from it when read, instead of every censored row being rewritten every poll
  (starting from now: the errors the last poll wrote run to about now).
- ``eta_scores.ended_at``: a parcel that ended without a delivery (returned to sender, or
  declared lost) stops there: its censored misses' error bound stops growing at that
  instant, and it no longer counts as still out.
- ``eta_scores``: insert-mostly now (a row changes once, when its delivery completes it):
  vacuumed after inserts (its visibility map, for index-only reads) and analyzed often
  enough that the rolling windows on the newest ``judged_at`` keep their estimates.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28
"""

from alembic import op
from service.store.migrations import statements

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in statements("""
        CREATE INDEX shipment_etas_p90 ON shipment_etas (eta_p90) WHERE NOT shadow;
        CREATE TABLE accuracy_checks (
            one        boolean PRIMARY KEY DEFAULT true CHECK (one),
            checked_at timestamptz);
        INSERT INTO accuracy_checks (one, checked_at)
            SELECT true, CASE WHEN EXISTS (SELECT 1 FROM eta_scores WHERE censored)
                              THEN now() END;
        ALTER TABLE eta_scores ADD COLUMN ended_at timestamptz;
        DROP INDEX eta_scores_still_out;
        ALTER TABLE eta_scores SET (
            autovacuum_vacuum_insert_scale_factor = 0.05,
            autovacuum_analyze_scale_factor = 0.02)
    """):
        op.execute(statement)


def downgrade() -> None:
    for statement in statements("""
        ALTER TABLE eta_scores RESET (autovacuum_vacuum_insert_scale_factor,
                                      autovacuum_analyze_scale_factor);
        CREATE INDEX eta_scores_still_out ON eta_scores (judged_at) WHERE censored;
        ALTER TABLE eta_scores DROP COLUMN ended_at;
        DROP TABLE accuracy_checks;
        DROP INDEX shipment_etas_p90
    """):
        op.execute(statement)
