"""Recommendations, against a store filled by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from activities import recommendations
from activities.recommendations import recommend
from triggermail.store import Customer, Order, OrderLine, Product, make_engine, make_session_factory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def session(store_url: str) -> Iterator[Session]:
    engine = make_engine(store_url)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def product(
    session: Session,
    product_id: str,
    *,
    brand: str | None = None,
    category: str | None = None,
    stock: int | None = None,
) -> None:
    session.add(
        Product(
            id=product_id,
            name=product_id.title(),
            price=Decimal("10"),
            brand=brand,
            category=category,
            stock=stock,
        )
    )


def order(
    session: Session, order_id: str, customer: str, *products: str, status: str = "completed"
) -> None:
    if session.get(Customer, customer) is None:
        session.add(Customer(id=customer, marketing_consent=True, traits={}))
    session.add(
        Order(
            id=order_id,
            customer_id=customer,
            status=status,
            placed_at=T0 + timedelta(hours=len(order_id)),
            lines=[OrderLine(product_id=p, quantity=1) for p in products],
        )
    )
    session.flush()


def ids(session: Session, customer: str, seeds: list[str], limit: int = 4) -> list[str]:
    return [p.id for p in recommend(session, customer_id=customer, seeds=seeds, limit=limit)]


@pytest.fixture
def shop(session: Session) -> Session:
    """Tees, socks and caps: two brands, three categories, one sold out."""
    product(session, "tee", brand="north", category="tops")
    product(session, "polo", brand="south", category="tops")
    product(session, "tank", brand="north", category="tops")
    product(session, "socks", brand="south", category="socks")
    product(session, "cap", brand="north", category="hats")
    product(session, "beanie", brand="east", category="hats", stock=0)
    product(session, "belt", brand="west", category="belts")
    session.add(Customer(id="me", marketing_consent=True, traits={}))
    session.flush()
    return session


def test_bought_together_ranks_above_likeness(shop: Session) -> None:
    # Socks were bought with tees twice, the cap once; polo and tank are only alike.
    order(shop, "o1", "a", "tee", "socks")
    order(shop, "o2", "b", "tee", "socks", "cap")
    assert ids(shop, "me", ["tee"]) == ["socks", "cap", "tank", "polo"]


def test_same_category_before_same_brand(shop: Session) -> None:
    # Polo: same category; cap: same brand; tank: both.
    assert ids(shop, "me", ["tee"], limit=3) == ["tank", "polo", "cap"]


def test_never_the_trigger_items_what_was_bought_or_what_is_sold_out(shop: Session) -> None:
    order(shop, "o1", "me", "tank")
    order(shop, "o2", "a", "cap", "beanie", "tee")
    got = ids(shop, "me", ["cap", "tee"], limit=10)
    assert "cap" not in got and "tee" not in got  # the e-mail's own products
    assert "tank" not in got  # bought before
    assert "beanie" not in got  # sold out
    assert got[0] == "polo"  # same category as the tee, nothing bought together left


def test_refunded_orders_count_for_nothing(shop: Session) -> None:
    order(shop, "o1", "a", "tee", "belt", status="refunded")
    order(shop, "o2", "me", "socks", status="refunded")
    assert "belt" not in ids(shop, "me", ["tee"], limit=10)  # a refunded pairing is none
    assert "socks" in ids(shop, "me", ["polo"], limit=10)  # a refunded purchase is none


def test_bestsellers_fill_in_when_nothing_is_alike(shop: Session) -> None:
    order(shop, "o1", "a", "socks")
    order(shop, "o2", "b", "socks", "belt")
    order(shop, "o3", "c", "socks")
    # Nothing in the hats' category or brand is left unbought and in stock but the cap.
    got = ids(shop, "me", ["beanie"], limit=3)
    assert got[0] == "cap"  # same category
    assert got[1:] == ["socks", "belt"]  # then what sells most


def test_no_seeds_means_bestsellers(shop: Session) -> None:
    order(shop, "o1", "a", "belt")
    order(shop, "o2", "b", "belt", "polo")
    assert ids(shop, "me", [], limit=2) == ["belt", "polo"]


def test_same_store_state_same_answer(shop: Session) -> None:
    order(shop, "o1", "a", "tee", "socks")
    order(shop, "o2", "b", "tee", "cap")
    first = ids(shop, "me", ["tee"], limit=5)
    assert all(ids(shop, "me", ["tee"], limit=5) == first for _ in range(5))
    # Ties (socks and cap were each bought with a tee once) go to the lower id.
    assert first[:2] == ["cap", "socks"]


def test_a_large_catalogue_does_not_push_the_best_out(shop: Session) -> None:
    # 600 products only of the tee's brand, all with ids before the polo and the tank.
    for n in range(600):
        product(shop, f"a{n:03d}", brand="north", category="bags")
    shop.flush()
    assert ids(shop, "me", ["tee"], limit=3) == ["tank", "polo", "a000"]
    order(shop, "o1", "a", "tee", "a599")
    assert ids(shop, "me", ["tee"], limit=3) == ["a599", "tank", "polo"]


def test_ties_among_hundreds_alike_go_to_the_better_seller(shop: Session) -> None:
    for n in range(600):
        product(shop, f"t{n:03d}", brand="south", category="tops")
    product(shop, "z-top", brand="south", category="tops")
    shop.flush()
    order(shop, "o1", "a", "z-top")
    # The polo, the 600 and z-top are all the same category and another brand.
    assert ids(shop, "me", ["tank"], limit=3) == ["tee", "z-top", "polo"]


def test_bestsellers_that_sold_alike_go_to_the_lower_id(session: Session) -> None:
    for product_id in ["c", "b", "a", "d"]:
        product(session, product_id)
    session.add(Customer(id="me", marketing_consent=True, traits={}))
    order(session, "o1", "x", "d", "c")
    order(session, "o2", "y", "c", "b")
    order(session, "o3", "z", "a", "d", "c")
    # a and b sold once each: the lower id first, whatever order the store groups them in.
    assert ids(session, "me", [], limit=4) == ["c", "d", "a", "b"]


def test_only_the_latest_orders_count(shop: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recommendations, "RECENT_ORDERS", 1)
    order(shop, "o1", "a", "tee", "socks")
    order(shop, "o22", "b", "tee", "cap")
    order(shop, "o333", "c", "belt")
    # Bought together: only the cap, in the latest order with a tee; selling lately:
    # only the belt, in the latest order. The socks are neither any more.
    assert ids(shop, "me", ["tee"], limit=10) == ["cap", "tank", "polo", "belt"]


def test_orders_placed_in_the_same_instant_are_taken_in_id_order(
    shop: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recommendations, "RECENT_ORDERS", 2)
    # All three are placed at the same time (order() times them by the id's length):
    # the latest two are o3 and o2, every time.
    order(shop, "o3", "c", "polo")
    order(shop, "o1", "a", "belt")
    order(shop, "o2", "b", "cap")
    assert ids(shop, "me", [], limit=3) == ["cap", "polo"]


def test_nothing_asked_nothing_read(shop: Session) -> None:
    assert ids(shop, "me", ["tee"], limit=0) == []
