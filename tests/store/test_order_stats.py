"""Each customer's order statistics, kept by the intake for the daily sweep, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from triggermail.migrate import alembic_config, upgrade
from triggermail.store import Customer, Order

TEE = {"product_id": "tee", "name": "Tee", "price": 20}
MAY = datetime(2026, 5, 14, 10, tzinfo=UTC)


@pytest.fixture
async def shop(env: WorkflowEnvironment, store_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, store_url, tmp_path) as shop:
        yield shop


async def order(shop: Shop, customer: str, order_id: str, total: float, at: datetime) -> None:
    await shop.send(
        {
            "type": "track",
            "userId": customer,
            "event": "Order Completed",
            "timestamp": at.isoformat(),
            "properties": {"order_id": order_id, "total": total, "products": [TEE]},
        }
    )


def stats(
    shop: Shop, customer: str
) -> tuple[int, Decimal, datetime | None, str | None, datetime | None]:
    with shop.sessions() as session:
        c = session.get(Customer, customer)
        assert c is not None
        return c.orders_count, c.total_spent, c.first_order_at, c.first_order_md, c.last_order_at


async def test_orders_and_refunds_keep_count_spend_first_and_last(shop: Shop) -> None:
    await order(shop, "c-1", "o-1", 40, MAY)
    await order(shop, "c-1", "o-2", 25.5, MAY + timedelta(days=30))
    assert stats(shop, "c-1") == (2, Decimal("65.50"), MAY, "05-14", MAY + timedelta(days=30))

    await shop.track("c-1", "Order Refunded", order_id="o-2")
    assert stats(shop, "c-1") == (1, Decimal("40.00"), MAY, "05-14", MAY)

    await shop.track("c-1", "Order Cancelled", order_id="o-1")
    assert stats(shop, "c-1") == (0, Decimal("0.00"), None, None, None)


async def test_a_guest_order_counts_once_the_visitor_is_named(shop: Shop) -> None:
    await shop.send(
        {
            "type": "track",
            "anonymousId": "a-1",
            "event": "Order Completed",
            "timestamp": MAY.isoformat(),
            "properties": {"order_id": "o-9", "total": 30, "products": [TEE]},
        }
    )
    await shop.send({"type": "identify", "userId": "c-2", "anonymousId": "a-1", "traits": {}})
    assert stats(shop, "c-2") == (1, Decimal("30.00"), MAY, "05-14", MAY)


def test_the_migration_backfills_the_orders_already_stored(store_url: str) -> None:
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    command.downgrade(alembic_config(store_url), "0004")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, marketing_consent, traits, created_at, updated_at) "
                "VALUES ('c-3', true, :traits, :now, :now)"
            ),
            {"traits": '{"birthday": "1990-02-28"}', "now": MAY},
        )
        for order_id, total, days, status in (
            ("o-a", 10, 0, "completed"),
            ("o-b", 15, 40, "completed"),
            ("o-c", 99, 50, "refunded"),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO orders (id, customer_id, status, total, placed_at) "
                    "VALUES (:id, 'c-3', :status, :total, :at)"
                ),
                {
                    "id": order_id,
                    "status": status,
                    "total": total,
                    "at": MAY + timedelta(days=days),
                },
            )
    upgrade(store_url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT orders_count, total_spent, first_order_md, birthday_md FROM customers "
                "WHERE id = 'c-3'"
            )
        ).one()
    engine.dispose()
    assert (row[0], Decimal(row[1]), row[2], row[3]) == (2, Decimal("25.00"), "05-14", "02-28")


async def test_an_order_reported_again_after_its_refund_stays_refunded(shop: Shop) -> None:
    await order(shop, "c-4", "o-4", 40, MAY)
    await shop.track("c-4", "Order Refunded", order_id="o-4")
    replay = await shop.send(
        {
            "type": "track",
            "userId": "c-4",
            "event": "Order Completed",
            "timestamp": MAY.isoformat(),
            "properties": {"order_id": "o-4", "total": 40, "products": [TEE]},
        }
    )
    with shop.sessions() as session:
        refunded = session.get(Order, "o-4")
        assert refunded is not None and refunded.status == "refunded"
    assert stats(shop, "c-4")[0] == 0
    assert not replay.duplicate  # a new event about the order, not the same one twice
