"""sweep indexes: birthdays and first-order anniversaries by day, then customer id

The daily sweep pages through a day's birthdays and anniversaries in customer-id order;
with the id in the index each page starts where the last ended instead of re-reading the
day's every match.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_birthday_md")
        batch_op.drop_index("ix_customers_first_order_md")
        batch_op.create_index("ix_customers_birthday_md_id", ["birthday_md", "id"], unique=False)
        batch_op.create_index(
            "ix_customers_first_order_md_id", ["first_order_md", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_first_order_md_id")
        batch_op.drop_index("ix_customers_birthday_md_id")
        batch_op.create_index("ix_customers_first_order_md", ["first_order_md"], unique=False)
        batch_op.create_index("ix_customers_birthday_md", ["birthday_md"], unique=False)
