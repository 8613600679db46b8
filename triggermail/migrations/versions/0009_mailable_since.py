"""mailable since: when a customer could first be mailed, so only a new one is welcomed

``customers.mailable_since`` is set once, by the event that first gives the customer both
an address and marketing consent; the welcome journey enters on the ``identify`` that set
it, not on every later login. Customers who can be mailed already count as mailable since
they were created, so turning the welcome on does not welcome an established shop.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch rebuild of customers would drop 0008's triggers on SQLite.
    op.add_column(
        "customers", sa.Column("mailable_since", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE customers SET mailable_since = created_at"
        " WHERE email IS NOT NULL AND marketing_consent"
    )


def downgrade() -> None:
    op.drop_column("customers", "mailable_since")
