"""The store on SQLite and PostgreSQL: schema, and what events do to the shop's tables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from triggermail.migrate import alembic_config, upgrade
from triggermail.store import (
    Base,
    Cart,
    CartLine,
    Customer,
    Event,
    Order,
    Product,
    make_engine,
    make_session_factory,
)


@pytest.fixture
async def shop(env: WorkflowEnvironment, store_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, store_url, tmp_path) as shop:
        yield shop


def test_migrations_build_exactly_the_models(store_url: str) -> None:
    engine = make_engine(store_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


async def test_identify_keeps_the_profile(shop: Shop) -> None:
    await shop.send(
        {
            "type": "identify",
            "userId": "c-1",
            "traits": {
                "email": "Ana@Example.COM",
                "firstName": "Ana",
                "marketing_consent": True,
                "birthday": "1990-04-01",
                "plan": "gold",
            },
            "context": {"locale": "fr-FR", "timezone": "Europe/Paris"},
        }
    )
    await shop.identify("c-1", lastName="Lopez", marketing_consent=False)

    with shop.sessions() as session:
        customer = session.get(Customer, "c-1")
        assert customer is not None
        assert (customer.email, customer.first_name, customer.last_name) == (
            "ana@example.com",
            "Ana",
            "Lopez",
        )
        assert (customer.locale, customer.timezone) == ("fr-FR", "Europe/Paris")
        assert customer.marketing_consent is False
        assert customer.traits["birthday"] == "1990-04-01"
        assert customer.traits["plan"] == "gold"


async def test_cart_lines_follow_adds_removes_and_checkout(shop: Shop) -> None:
    await shop.identify("c-1", email="c-1@example.com")
    tee = {"product_id": "tee", "name": "Tee", "price": "19.99", "cart_id": "k", "brand": "Acme"}
    await shop.track("c-1", "Product Added", **tee)
    await shop.track("c-1", "Product Added", **tee)
    await shop.track("c-1", "Product Added", product_id="cap", name="Cap", price=9, cart_id="k")
    await shop.track("c-1", "Product Removed", product_id="tee", quantity=1, cart_id="k")

    def lines() -> list[tuple[str, int, Decimal | None]]:
        with shop.sessions() as session:
            rows = session.scalars(select(CartLine).order_by(CartLine.position))
            return [(row.product_id, row.quantity, row.price) for row in rows]

    assert lines() == [("tee", 1, Decimal("19.99")), ("cap", 1, Decimal("9.00"))]
    await shop.track(
        "c-1",
        "Checkout Started",
        cart_id="k",
        currency="EUR",
        products=[{"product_id": "cap", "quantity": 3, "price": 9}],
    )
    assert lines() == [("cap", 3, Decimal("9.00"))]
    with shop.sessions() as session:
        product = session.get(Product, "tee")
        assert product is not None
        assert (product.name, product.price, product.brand) == ("Tee", Decimal("19.99"), "Acme")


async def test_order_completed_records_the_order_and_closes_the_cart(shop: Shop) -> None:
    await shop.identify("c-1", email="c-1@example.com")
    await shop.track("c-1", "Product Added", product_id="tee", name="Tee", price=20, cart_id="k")
    placed = await shop.now()
    call = {
        "type": "track",
        "userId": "c-1",
        "event": "Order Completed",
        "messageId": "order-msg",
        "timestamp": placed.isoformat(),
        "properties": {
            "order_id": "o-1",
            "total": "40.00",
            "revenue": 36.5,
            "currency": "EUR",
            "coupon": "SAVE10",
            "products": [{"product_id": "tee", "quantity": 2, "price": 20}],
        },
    }
    first = await shop.send(dict(call))
    again = await shop.send(dict(call))
    assert first.signalled == ["abandoned-cart/c-1"]
    assert again.duplicate and again.signalled == []

    with shop.sessions() as session:
        order = session.get(Order, "o-1")
        assert order is not None
        assert (order.total, order.revenue, order.coupon) == (
            Decimal("40.00"),
            Decimal("36.50"),
            "SAVE10",
        )
        assert [(ln.product_id, ln.quantity) for ln in order.lines] == [("tee", 2)]
        assert abs(order.placed_at - placed) < timedelta(milliseconds=1)
        assert order.placed_at.tzinfo is not None
        cart = session.get(Cart, "k")
        assert cart is not None and cart.status == "ordered"
        assert session.scalar(select(func.count()).select_from(Event)) == 3
        event = session.scalar(select(Event).where(Event.message_id == "order-msg"))
        assert event is not None and event.routed_at is not None


async def test_an_old_event_keeps_its_own_time_and_starts_no_journey(shop: Shop) -> None:
    """Importing last year's history must look like last year, not mail anyone today."""
    last_year = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    await shop.identify("c-1", email="c-1@example.com")
    result = await shop.send(
        {
            "type": "track",
            "userId": "c-1",
            "event": "Product Added",
            "timestamp": last_year.isoformat(),
            "properties": {"product_id": "tee", "name": "Tee", "price": 20},
        }
    )
    assert result.started == []
    with shop.sessions() as session:
        event = session.scalar(select(Event).where(Event.event == "Product Added"))
        assert event is not None and event.timestamp == last_year
        assert event.received_at > last_year


async def test_unknown_events_are_stored_not_rejected(shop: Shop) -> None:
    result = await shop.track("c-1", "Wishlist Shared", wishlist_id="w-9")
    assert not result.duplicate
    with shop.sessions() as session:
        event = session.scalar(select(Event).where(Event.event == "Wishlist Shared"))
        assert event is not None and event.payload["properties"] == {"wishlist_id": "w-9"}


async def test_concurrent_events_of_a_new_customer_make_one_customer(shop: Shop) -> None:
    products = [{"product_id": f"p{i % 3}", "name": f"P{i % 3}", "price": 5} for i in range(12)]
    await asyncio.gather(*(shop.track("new", "Product Viewed", **p) for p in products))

    with shop.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 1
        assert session.scalar(select(func.count()).select_from(Product)) == 3
        assert session.scalar(select(func.count()).select_from(Event)) == 12


def test_the_migration_counts_customers_mailable_already_as_mailable_since_created(
    store_url: str,
) -> None:
    created = datetime(2025, 3, 1, 9, tzinfo=UTC)
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    command.downgrade(alembic_config(store_url), "0008")
    with engine.begin() as conn:
        for customer_id, email, consent in (
            ("m-1", "ana@example.com", True),
            ("m-2", "ben@example.com", False),
            ("m-3", None, True),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO customers (id, email, marketing_consent, traits, created_at,"
                    " updated_at) VALUES (:id, :email, :consent, '{}', :at, :at)"
                ),
                {"id": customer_id, "email": email, "consent": consent, "at": created},
            )
    upgrade(store_url)
    engine.dispose()
    with make_session_factory(make_engine(store_url))() as session:
        since = {
            cid: at for cid, at in session.execute(select(Customer.id, Customer.mailable_since))
        }
    # The welcome is for customers new from now on, not for the shop it is switched on in.
    assert since == {"m-1": created, "m-2": None, "m-3": None}


async def test_the_identify_that_brings_address_and_consent_sets_mailable_since(
    shop: Shop,
) -> None:
    await shop.identify("c-9", marketing_consent=False)
    await shop.sleep(hours=1)
    at = await shop.now()
    await shop.identify("c-9", email="c9@example.com", marketing_consent=True)
    await shop.sleep(days=2)
    await shop.identify("c-9", marketing_consent=False)
    await shop.identify("c-9", marketing_consent=True)  # renewed: no new customer

    with shop.sessions() as session:
        customer = session.get(Customer, "c-9")
        assert customer is not None and customer.mailable_since is not None
        assert customer.mailable_since - at == pytest.approx(timedelta(0), abs=timedelta(seconds=2))
