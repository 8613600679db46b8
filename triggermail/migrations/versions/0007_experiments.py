"""experiments: A/B experiments and their automatic winners; the ledger by due time

``experiments`` holds each step experiment's start and, once decided, its winner, which
new entries get. ``email_sends (due_at)`` serves the report and the experiments' reads
of a period's ledger rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("winner", sa.String(length=64), nullable=True),
        sa.Column("probability", sa.Double(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("figures", sa.JSON(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.create_index("ix_email_sends_due_at", ["due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_email_sends_due_at")

    op.drop_table("experiments")
