"""suppression follow-up: which unsubscribes still have journeys to end

``suppressions.journeys_ended_at`` is set once Temporal has taken the exit signals of a
customer's journeys after an unsubscribe or a complaint. The HTTP answer no longer waits
for Temporal: the row is the durable to-do that the API drains until it is set. Rows
from before count as done (their journeys were signalled while the request waited).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "suppressions", sa.Column("journeys_ended_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE suppressions SET journeys_ended_at = created_at")


def downgrade() -> None:
    op.drop_column("suppressions", "journeys_ended_at")
