"""identities: anonymous ids linked to customers; carts and orders of anonymous visitors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("anonymous_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("anonymous_id"),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identities_customer_id"), ["customer_id"], unique=False
        )

    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anonymous_id", sa.String(length=255), nullable=True))
        batch_op.alter_column("customer_id", existing_type=sa.VARCHAR(length=255), nullable=True)
        batch_op.create_index(batch_op.f("ix_carts_anonymous_id"), ["anonymous_id"], unique=False)

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_id", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_events_customer_time", ["customer_id", "timestamp"], unique=False)
    # Before identities, an event belonged to its userId and to no one without one.
    op.execute("UPDATE events SET customer_id = user_id WHERE user_id IS NOT NULL")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anonymous_id", sa.String(length=255), nullable=True))
        batch_op.alter_column("customer_id", existing_type=sa.VARCHAR(length=255), nullable=True)
        batch_op.create_index(batch_op.f("ix_orders_anonymous_id"), ["anonymous_id"], unique=False)


def downgrade() -> None:
    # The old schema has no place for what anonymous visitors did: it goes (events keep it).
    op.execute(
        "DELETE FROM order_lines"
        " WHERE order_id IN (SELECT id FROM orders WHERE customer_id IS NULL)"
    )
    op.execute("DELETE FROM orders WHERE customer_id IS NULL")
    op.execute(
        "DELETE FROM cart_lines WHERE cart_id IN (SELECT id FROM carts WHERE customer_id IS NULL)"
    )
    op.execute("DELETE FROM carts WHERE customer_id IS NULL")

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_anonymous_id"))
        batch_op.alter_column("customer_id", existing_type=sa.VARCHAR(length=255), nullable=False)
        batch_op.drop_column("anonymous_id")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_customer_time")
        batch_op.drop_column("customer_id")

    with op.batch_alter_table("carts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_carts_anonymous_id"))
        batch_op.alter_column("customer_id", existing_type=sa.VARCHAR(length=255), nullable=False)
        batch_op.drop_column("anonymous_id")

    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identities_customer_id"))

    op.drop_table("identities")
