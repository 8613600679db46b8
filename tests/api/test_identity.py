"""Anonymous visitors: stored as they come, and the customer's once an identify links them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from tests.api.conftest import Api
from tests.harness import Shop
from triggermail.store import Cart, Customer, Event, Identity, Order


@pytest.fixture
async def shop(env: WorkflowEnvironment, store_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """Identity is the store's business: these run on SQLite and on PostgreSQL."""
    async with Shop(env, store_url, tmp_path) as shop:
        yield shop


TEE: dict[str, Any] = {
    "product_id": "tee-1",
    "name": "Organic cotton T-shirt",
    "price": 24.9,
    "cart_id": "k-1",
}


def anonymous(event: str, anonymous_id: str = "anon-1", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "anonymousId": anonymous_id, "event": event, "properties": properties}


def events_of(shop: Shop, customer_id: str | None) -> list[str | None]:
    with shop.sessions() as session:
        rows = session.scalars(select(Event).where(Event.customer_id == customer_id))
        return [row.event or row.type for row in rows]


async def identify(api: Api, user_id: str, anonymous_id: str) -> dict[str, Any]:
    response = await api.post(
        "/v1/identify",
        {
            "userId": user_id,
            "anonymousId": anonymous_id,
            "traits": {"email": f"{user_id}@example.com", "marketing_consent": True},
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_anonymous_events_are_stored_with_a_cart_but_start_nothing(
    api: Api, shop: Shop
) -> None:
    response = await api.post(
        "/v1/batch",
        {"batch": [anonymous("Product Viewed", **TEE), anonymous("Product Added", **TEE)]},
    )

    assert response.status_code == 200
    assert [r["journeys"] for r in response.json()["results"]] == [[], []]
    assert events_of(shop, None) == ["Product Viewed", "Product Added"]
    with shop.sessions() as session:
        cart = session.get(Cart, "k-1")
        assert cart is not None
        assert (cart.customer_id, cart.anonymous_id, len(cart.lines)) == (None, "anon-1", 1)


async def test_login_after_anonymous_shopping_makes_the_cart_theirs_timed_from_the_cart(
    api: Api, shop: Shop
) -> None:
    start = await shop.now()
    await api.post("/v1/batch", {"batch": [anonymous("Product Added", **TEE)]})
    await shop.sleep(minutes=10)

    linked = await identify(api, "c-1", "anon-1")

    assert linked["results"][0]["journeys"] == ["abandoned-cart/c-1"]
    assert events_of(shop, "c-1") == ["Product Added", "identify"]
    with shop.sessions() as session:
        cart = session.get(Cart, "k-1")
        assert cart is not None and cart.customer_id == "c-1"
        identity = session.get(Identity, "anon-1")
        assert identity is not None and identity.customer_id == "c-1"
    await shop.sleep(minutes=25)
    (reminder,) = shop.outbox_mail()
    # 30 minutes after the cart last changed, not after the login.
    assert reminder.at - start < timedelta(minutes=31)
    assert "Organic cotton T-shirt" in reminder.text


async def test_after_the_link_anonymous_events_count_for_the_customer(api: Api, shop: Shop) -> None:
    await identify(api, "c-1", "anon-1")

    response = await api.post("/v1/batch", {"batch": [anonymous("Product Added", **TEE)]})

    assert response.json()["results"][0]["journeys"] == ["abandoned-cart/c-1"]
    assert events_of(shop, "c-1") == ["identify", "Product Added"]
    with shop.sessions() as session:
        cart = session.get(Cart, "k-1")
        assert cart is not None and cart.customer_id == "c-1"


async def test_a_guest_order_becomes_the_customers_and_closes_the_visitors_cart(
    api: Api, shop: Shop
) -> None:
    await api.post(
        "/v1/batch",
        {
            "batch": [
                anonymous("Product Added", **TEE),
                anonymous("Order Completed", order_id="o-1", total=24.9, products=[TEE]),
            ]
        },
    )

    linked = await identify(api, "c-1", "anon-1")

    assert linked["results"][0]["journeys"] == []  # the cart was bought: nothing to remind
    with shop.sessions() as session:
        order = session.get(Order, "o-1")
        assert order is not None and order.customer_id == "c-1"
        cart = session.get(Cart, "k-1")
        assert cart is not None and cart.status == "ordered"


async def test_a_shared_device_keeps_its_past_with_the_first_customer(api: Api, shop: Shop) -> None:
    await api.post("/v1/batch", {"batch": [anonymous("Product Viewed", **TEE)]})
    await identify(api, "c-1", "anon-1")
    await shop.sleep(minutes=1)
    await identify(api, "c-2", "anon-1")
    await api.post("/v1/batch", {"batch": [anonymous("Cart Viewed")]})

    assert events_of(shop, "c-1") == ["Product Viewed", "identify"]
    assert events_of(shop, "c-2") == ["identify", "Cart Viewed"]


async def test_alias_links_the_previous_id(api: Api, shop: Shop) -> None:
    await api.post("/v1/batch", {"batch": [anonymous("Product Viewed", anonymous_id="old")]})

    response = await api.post("/v1/alias", {"userId": "c-1", "previousId": "old"})

    assert response.status_code == 200
    assert events_of(shop, "c-1") == ["Product Viewed", "alias"]


async def test_concurrent_batches_for_a_new_customer_make_one_customer(
    api: Api, shop: Shop
) -> None:
    batches = [
        {"batch": [{"type": "identify", "userId": "c-1", "anonymousId": f"anon-{i}"}]}
        for i in range(4)
    ]

    responses = await asyncio.gather(*(api.post("/v1/batch", body) for body in batches))

    assert [r.status_code for r in responses] == [200] * 4
    with shop.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 1
        assert session.scalar(select(func.count()).select_from(Identity)) == 4
    assert events_of(shop, "c-1") == ["identify"] * 4
