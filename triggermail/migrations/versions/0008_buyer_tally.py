"""buyer tally: the number of buyers kept as it changes, not counted by every sweep

``buyer_tally`` holds changes to the number of customers with ``total_spent > 0``; their
sum is that number. Triggers on ``customers`` add +1 or -1 when a row becomes or stops
being a buyer (an insert, an update of ``total_spent``, a delete), so every writer keeps
it, and concurrent writers append rather than wait on one counter row. The daily sweep's
VIP threshold reads the sum (a few rows, folded by each sweep) instead of counting every
customer. Starts from the customers already in the store.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = ("customers_buyer_insert", "customers_buyer_update", "customers_buyer_delete")
WHEN = {
    "customers_buyer_insert": ("INSERT", "NEW.total_spent > 0"),
    "customers_buyer_update": (
        "UPDATE OF total_spent",
        "(OLD.total_spent > 0) <> (NEW.total_spent > 0)",
    ),
    "customers_buyer_delete": ("DELETE", "OLD.total_spent > 0"),
}
CHANGE = {
    "customers_buyer_insert": "1",
    "customers_buyer_update": "CASE WHEN NEW.total_spent > 0 THEN 1 ELSE -1 END",
    "customers_buyer_delete": "-1",
}


def upgrade() -> None:
    op.create_table(
        "buyer_tally",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("change", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        "INSERT INTO buyer_tally (change) SELECT count(*) FROM customers WHERE total_spent > 0"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION buyer_tally_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO buyer_tally (change) VALUES (
                    CASE WHEN TG_OP <> 'DELETE' AND NEW.total_spent > 0 THEN 1 ELSE -1 END
                );
                RETURN NULL;
            END
            $$
            """
        )
        for name in TRIGGERS:
            event, when = WHEN[name]
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON customers FOR EACH ROW"
                f" WHEN ({when}) EXECUTE FUNCTION buyer_tally_change()"
            )
    else:
        # SQLite: a batch migration that rebuilds ``customers`` drops these; the tally
        # tests at head catch that.
        for name in TRIGGERS:
            event, when = WHEN[name]
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON customers WHEN {when}"
                f" BEGIN INSERT INTO buyer_tally (change) VALUES ({CHANGE[name]}); END"
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON customers" if postgresql else f"DROP TRIGGER {name}")
    if postgresql:
        op.execute("DROP FUNCTION buyer_tally_change()")
    op.drop_table("buyer_tally")
