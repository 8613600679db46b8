"""One event, every journey it concerns: the routing rules of starter/routing.py end to end."""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.guardrails.conftest import shop_api
from tests.harness import Shop
from triggermail.ids import (
    abandoned_cart_id,
    browse_abandonment_id,
    post_purchase_id,
    replenishment_id,
    review_request_id,
)
from triggermail.web.customer_card import load_card
from workflows.types import JourneyResult

EVERY = ("abandoned_cart", "browse_abandonment", "post_purchase", "review_request", "replenishment")
TEE = {
    "product_id": "tee",
    "name": "Organic cotton T-shirt",
    "price": 24.9,
    "category": "T-shirts",
    "repurchase_days": 180,
}


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=EVERY) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    # Order-keyed journeys are used once ever: each test has its own customer and orders.
    return f"c-{uuid.uuid4().hex[:8]}"


async def test_an_order_ends_the_journeys_that_end_on_purchase_and_starts_the_orders_own(
    shop: Shop, c: str
) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    viewed = await shop.track(c, "Product Viewed", **TEE)
    assert viewed.started == [browse_abandonment_id(c)]
    await shop.sleep(minutes=5)

    ordered = await shop.track(c, "Order Completed", order_id=f"o-{c}", total=24.9, products=[TEE])

    assert sorted(ordered.signalled) == sorted([abandoned_cart_id(c), browse_abandonment_id(c)])
    assert ordered.started == [
        post_purchase_id(f"o-{c}"),
        review_request_id(f"o-{c}"),
        replenishment_id(c, "tee"),
    ]
    assert await shop.handle(browse_abandonment_id(c)).result() == JourneyResult(
        exit_reason="purchase", sent=[]
    )


async def test_an_order_reported_again_after_temporal_forgot_its_journeys_starts_them_not(
    shop: Shop, c: str
) -> None:
    order_id = f"o-{c}"
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    # What the order's journeys leave once the namespace's retention has dropped their
    # closed runs: the ledger's rows, and no workflow under their IDs.
    shop.record_sent(
        c, journey="post_purchase", step="thank_you", workflow_id=post_purchase_id(order_id)
    )
    shop.record_sent(
        c, journey="review_request", step="ask", workflow_id=review_request_id(order_id)
    )

    ordered = await shop.track(c, "Order Completed", order_id=order_id, total=24.9, products=[TEE])
    delivered = await shop.track(c, "Order Delivered", order_id=order_id)
    await shop.sleep(days=10)

    assert ordered.started == [replenishment_id(c, "tee")] and delivered.started == []
    assert shop.outbox_mail() == []


async def test_a_cart_change_signals_browse_abandonment_only_after_a_view(
    shop: Shop, c: str
) -> None:
    await shop.identify(c, email=f"{c}@example.com")
    added = await shop.track(c, "Product Added", **TEE)
    # No view, so no browse journey to end: one start, no signal to a journey not there.
    assert added.started == [abandoned_cart_id(c)] and added.signalled == []


async def test_one_click_unsubscribe_ends_the_journeys_of_every_order_and_product(
    shop: Shop, c: str
) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.track(c, "Order Completed", order_id=f"o-{c}", total=24.9, products=[TEE])
    await shop.sleep(minutes=1)
    (thank_you,) = [row for row in shop.ledger() if row.status == "sent"]
    assert thank_you.step == "thank_you"

    raw = (shop.outbox / f"{thank_you.id}.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    path = urlsplit(str(message["List-Unsubscribe"]).strip("<>")).path
    async with shop_api(shop) as http:
        await shop.tick()
        reply = await http.post(path, content="List-Unsubscribe=One-Click")
    assert reply.status_code == 200

    for workflow_id in (
        post_purchase_id(f"o-{c}"),
        review_request_id(f"o-{c}"),
        replenishment_id(c, "tee"),
    ):
        result = await shop.handle(workflow_id).result()
        assert result.exit_reason == "unsubscribed", workflow_id
    await shop.sleep(days=200)
    assert [m.step for m in shop.outbox_mail()] == ["thank_you"]


async def test_the_card_lists_the_journeys_of_the_customers_orders(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.track(c, "Order Completed", order_id=f"o-{c}", total=24.9, products=[TEE])
    await shop.sleep(hours=1)

    card = await load_card(c, session_factory=shop.sessions, client=shop.env.client)

    assert card is not None and card.journeys is not None
    running = {(j.journey, j.workflow_id) for j in card.journeys}
    assert running == {
        ("post_purchase", post_purchase_id(f"o-{c}")),
        ("review_request", review_request_id(f"o-{c}")),
        ("replenishment", replenishment_id(c, "tee")),
    }
