"""lapsed customers: order statistics and birthdays on customers, sweep runs, journey
entries, survey answers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from triggermail.birthdays import parse_birthday

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweep_runs",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "journey_entries",
        sa.Column("workflow_id", sa.String(length=512), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sweep_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("workflow_id"),
    )
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_journey_entries_customer", ["customer_id", "entered_at"], unique=False
        )

    op.create_table(
        "survey_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("send_id", sa.String(length=32), nullable=False),
        sa.Column("answer", sa.String(length=32), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("send_id"),
    )
    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_survey_answers_customer_id"), ["customer_id"], unique=False
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("birthday", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("birthday_md", sa.String(length=5), nullable=True))
        batch_op.add_column(
            sa.Column("orders_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "total_spent", sa.Numeric(precision=12, scale=2), server_default="0", nullable=False
            )
        )
        batch_op.add_column(sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("first_order_md", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_customers_birthday_md"), ["birthday_md"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_customers_first_order_md"), ["first_order_md"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_customers_last_order_at"), ["last_order_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_customers_total_spent"), ["total_spent"], unique=False)

    _backfill()


def _backfill() -> None:
    """The statistics of the orders already in the store; the intake keeps them from now on."""
    bind = op.get_bind()
    completed = "FROM orders o WHERE o.customer_id = customers.id AND o.status = 'completed'"
    op.execute(
        f"""
        UPDATE customers SET
          orders_count = (SELECT count(*) {completed}),
          total_spent = COALESCE((SELECT sum(COALESCE(o.revenue, o.total, 0)) {completed}), 0),
          first_order_at = (SELECT min(o.placed_at) {completed}),
          last_order_at = (SELECT max(o.placed_at) {completed})
        WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id)
        """
    )
    month_day = (
        "to_char(first_order_at AT TIME ZONE 'UTC', 'MM-DD')"
        if bind.dialect.name == "postgresql"
        else "strftime('%m-%d', first_order_at)"
    )
    op.execute(
        f"UPDATE customers SET first_order_md = {month_day} WHERE first_order_at IS NOT NULL"
    )
    customers = sa.table(
        "customers",
        sa.column("id", sa.String),
        sa.column("traits", sa.JSON),
        sa.column("birthday", sa.Date),
        sa.column("birthday_md", sa.String),
    )
    for customer_id, traits in bind.execute(sa.select(customers.c.id, customers.c.traits)):
        born = parse_birthday((traits or {}).get("birthday"))
        if born is not None:
            bind.execute(
                customers.update()
                .where(customers.c.id == customer_id)
                .values(birthday=born, birthday_md=born.strftime("%m-%d"))
            )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_total_spent"))
        batch_op.drop_index(batch_op.f("ix_customers_last_order_at"))
        batch_op.drop_index(batch_op.f("ix_customers_first_order_md"))
        batch_op.drop_index(batch_op.f("ix_customers_birthday_md"))
        batch_op.drop_column("last_order_at")
        batch_op.drop_column("first_order_md")
        batch_op.drop_column("first_order_at")
        batch_op.drop_column("total_spent")
        batch_op.drop_column("orders_count")
        batch_op.drop_column("birthday_md")
        batch_op.drop_column("birthday")

    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_answers_customer_id"))

    op.drop_table("survey_answers")
    with op.batch_alter_table("journey_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_journey_entries_customer")

    op.drop_table("journey_entries")
    op.drop_table("sweep_runs")
