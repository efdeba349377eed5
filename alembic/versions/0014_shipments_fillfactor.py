"""Shipments keep 60 % of each page free, so a batch's updates stay on their pages (HOT).

Ingest updates every shipment a batch has events for in one statement (event count, last
scan, status), and shipments created together sit together on disk, so a batch of 1,000
events rewrites most rows of the pages it touches at once. A page can hold the new versions
of its rows only if it has at least as much room free as its rows take, a bit more as a new
shipment's first scan fills columns that were empty: with `fillfactor = 80` (0011) the first
fifth of them fitted and the rest moved to other pages, each move an entry in all five
indexes (one of them an expression). Measured on the ingest benchmark's data (20,000
shipments, 60 batches of 1,000 events each updating 1,000 of them, one connection, a
loaded machine):

==========  ============  ================  ==================  ===========
fillfactor  HOT updates   dead rows after   statement, median   pages after
==========  ============  ================  ==================  ===========
80          40 %          47,950            112-120 ms          1,208
50          93 %          4,835             84-96 ms            765
40          99.9 %        1,035             (as 50, in noise)   769
==========  ============  ================  ==================  ===========

The table is even smaller after it: moved rows leave dead copies that only vacuum
reclaims, HOT ones are pruned on their page. Only pages written from now on follow the
setting; `VACUUM FULL shipments` (or pg_repack) rewrites the existing ones.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE shipments SET (fillfactor = 40)")


def downgrade() -> None:
    op.execute("ALTER TABLE shipments SET (fillfactor = 80)")
