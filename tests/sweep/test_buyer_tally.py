"""The number of buyers the VIP threshold ranks by, kept by the store as customers change
instead of counted by every sweep, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.segments import buyers, vip_threshold
from tests.harness import Shop
from tests.sweep.kit import customer
from triggermail.journeys import Segments
from triggermail.migrate import alembic_config, upgrade
from triggermail.store import BuyerTally, Customer, make_engine, make_session_factory

TEE = {"product_id": "tee", "name": "Tee", "price": 20}
MAY = datetime(2026, 5, 14, 10, tzinfo=UTC)


@pytest.fixture
def sessions(store_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(store_url)
    yield make_session_factory(engine)
    engine.dispose()


def counted(session: Session) -> int:
    """What the sweep counted before the tally: every buyer."""
    return session.scalar(select(func.count()).where(Customer.total_spent > 0)) or 0


def tally(sessions: sessionmaker[Session]) -> tuple[int, int]:
    """The tally's sum, folded as a sweep folds it, beside a count of every buyer."""
    with sessions.begin() as session:
        return buyers(session), counted(session)


def test_every_write_of_a_customer_keeps_the_tally(sessions: sessionmaker[Session]) -> None:
    lapse = MAY
    with sessions.begin() as session:
        session.add_all(
            [
                customer("a", last_order=lapse, spent="40"),
                customer("b", last_order=lapse, spent="15"),
                customer("never"),
            ]
        )
    assert tally(sessions) == (2, 2)

    with sessions.begin() as session:
        # Refunded to nothing, a second order of one already buying, a first order.
        session.execute(update(Customer).where(Customer.id == "a").values(total_spent=0))
        session.execute(update(Customer).where(Customer.id == "b").values(total_spent=30))
        session.execute(update(Customer).where(Customer.id == "never").values(total_spent=9))
    assert tally(sessions) == (2, 2)

    with sessions.begin() as session:
        session.execute(delete(Customer).where(Customer.id == "b"))
        session.execute(update(Customer).where(Customer.id == "a").values(total_spent=5))
    assert tally(sessions) == (2, 2)

    with sessions() as session:
        # Folded into one row by the last read, which a second read leaves as it is.
        assert session.scalars(select(BuyerTally.change)).all() == [2]
    assert tally(sessions) == (2, 2)


def test_the_threshold_ranks_the_tallied_buyers(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add_all(
            customer(f"c{i:02}", last_order=MAY, spent=str(10 * (i + 1))) for i in range(40)
        )
        session.add(customer("never"))
    with sessions.begin() as session:
        # 5 % of 40 buyers: the second biggest spender.
        assert vip_threshold(session, Segments(vip_percent=5)) == Decimal("390")
    with sessions.begin() as session:
        session.execute(update(Customer).values(total_spent=0))
        assert vip_threshold(session, Segments(vip_percent=5)) is None


@pytest.fixture
async def shop(env: WorkflowEnvironment, store_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, store_url, tmp_path) as shop:
        yield shop


async def test_orders_refunds_and_cancellations_move_the_tally(shop: Shop) -> None:
    async def order(customer_id: str, order_id: str, at: datetime) -> None:
        await shop.send(
            {
                "type": "track",
                "userId": customer_id,
                "event": "Order Completed",
                "timestamp": at.isoformat(),
                "properties": {"order_id": order_id, "total": 40, "products": [TEE]},
            }
        )

    await shop.send({"type": "identify", "userId": "c-0", "traits": {}})
    await order("c-1", "o-1", MAY)
    await order("c-1", "o-2", MAY + timedelta(days=30))
    await order("c-2", "o-3", MAY)
    assert tally(shop.sessions) == (2, 2)

    await shop.track("c-1", "Order Refunded", order_id="o-2")
    await shop.track("c-2", "Order Cancelled", order_id="o-3")
    assert tally(shop.sessions) == (1, 1)

    await shop.track("c-1", "Order Refunded", order_id="o-1")
    await order("c-0", "o-4", MAY)
    assert tally(shop.sessions) == (1, 1)


def test_the_migration_starts_from_the_buyers_already_stored(store_url: str) -> None:
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    command.downgrade(alembic_config(store_url), "0007")
    with engine.begin() as conn:
        for customer_id, spent in (("c-1", 40), ("c-2", 0), ("c-3", 12)):
            conn.execute(
                sa.text(
                    "INSERT INTO customers (id, marketing_consent, traits, created_at,"
                    " updated_at, total_spent) VALUES (:id, true, '{}', :now, :now, :spent)"
                ),
                {"id": customer_id, "now": MAY, "spent": spent},
            )
    upgrade(store_url)
    sessions = make_session_factory(engine)
    assert tally(sessions) == (2, 2)
    with sessions.begin() as session:
        session.add(customer("c-4", last_order=MAY))
    assert tally(sessions) == (3, 3)
    engine.dispose()
