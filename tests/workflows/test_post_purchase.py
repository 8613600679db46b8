"""Post-purchase, as the customer experiences it, on the time-skipping server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from starter.intake import IntakeResult
from tests.harness import Shop
from triggermail.ids import post_purchase_id
from triggermail.journeys import Guardrails
from triggermail.store import Order
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
SECONDS = timedelta(seconds=2)

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9, "category": "tops"}
TOTE = {"product_id": "tote-2", "name": "Canvas tote", "price": 15, "category": "bags"}
SOCKS = {"product_id": "socks-3", "name": "Wool socks", "price": 9, "category": "basics"}
SHIRT = {"product_id": "shirt-4", "name": "Linen shirt", "price": 49, "category": "tops"}
MUG = {"product_id": "mug-5", "name": "Tea mug", "price": 8}
GLOVES = {"product_id": "gloves-6", "name": "Leather gloves", "price": 50, "stock": 0}


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=("post_purchase",)) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer per test; orders are named after it (an order's journey runs once ever)."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def customer(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")


async def order(
    shop: Shop,
    c: str,
    order_id: str,
    *products: dict[str, Any],
    days_ago: float = 0,
    message_id: str | None = None,
) -> IntakeResult:
    """An Order Completed; ``days_ago`` imports it as past history (no journey of its own)."""
    at = await shop.tick() - timedelta(days=days_ago)
    call: dict[str, Any] = {
        "type": "track",
        "userId": c,
        "event": "Order Completed",
        "timestamp": at.isoformat(),
        "properties": {"order_id": order_id, "products": list(products)},
    }
    if message_id:
        call["messageId"] = message_id
    return await shop.send(call)


async def past_orders(shop: Shop, c: str) -> None:
    """The shop's history: others bought the T-shirt with the tote (twice), the socks and
    the gloves; the linen shirt and the mug sold on their own; the customer has socks."""
    await order(shop, f"{c}-x", f"ox-{c}", TEE, TOTE, days_ago=50)
    await order(shop, f"{c}-y", f"oy-{c}", TEE, TOTE, SOCKS, GLOVES, days_ago=40)
    await order(shop, f"{c}-z", f"oz-{c}", SHIRT, MUG, days_ago=30)
    await order(shop, c, f"o0-{c}", SOCKS, days_ago=60)


def shown(text: str) -> list[str]:
    """The products an e-mail lists, by name, in order."""
    return [line[2:].split(":")[0] for line in text.splitlines() if line.startswith("- ")]


async def result(shop: Shop, order_id: str) -> JourneyResult:
    return await shop.handle(post_purchase_id(order_id)).result()


async def test_thank_you_at_once_then_what_goes_with_the_order_three_days_later(
    env: WorkflowEnvironment, store_url: str, tmp_path: Path, c: str
) -> None:
    async with Shop(env, store_url, tmp_path, enabled=("post_purchase",)) as shop:
        await past_orders(shop, c)
        await customer(shop, c)
        start = await shop.now()
        placed = await order(shop, c, f"o-{c}", {**TEE, "quantity": 2}, MUG)
        assert post_purchase_id(f"o-{c}") in placed.started
        await shop.sleep(days=2, hours=23)
        assert [m.step for m in shop.outbox_mail()] == ["thank_you"]
        await shop.sleep(days=7)

        mail = shop.outbox_mail()
        assert [(m.to, m.step) for m in mail] == [
            (f"Ana <{c}@example.com>", "thank_you"),
            (f"Ana <{c}@example.com>", "cross_sell"),
        ]
        thanks, cross_sell = mail
        assert thanks.at - start == pytest.approx(timedelta(0), abs=SECONDS)
        assert cross_sell.at - start == pytest.approx(timedelta(days=3), abs=SECONDS)
        assert thanks.subject == "Ana, thank you for your order"
        assert f"order o-{c}" in thanks.text
        assert shown(thanks.text) == ["Organic cotton T-shirt \N{MULTIPLICATION SIGN} 2", "Tea mug"]
        assert "Total: €57.80" in thanks.text
        assert cross_sell.subject == "Ana, picked to go with your order"
        # Bought with the T-shirt by others first, then the T-shirt's category; never the
        # socks (the customer has them) nor the gloves (out of stock), nor the order itself.
        assert shown(cross_sell.text) == ["Canvas tote", "Linen shirt"]
        assert await result(shop, f"o-{c}") == JourneyResult(
            exit_reason="completed", sent=["thank_you", "cross_sell"]
        )

        if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES") and store_url.startswith("sqlite"):
            history = await shop.handle(post_purchase_id(f"o-{c}")).fetch_history()
            (HISTORIES / "post_purchase-completed-2026-11.json").write_text(history.to_json())


@pytest.mark.parametrize(
    ("event", "reason"),
    [("Order Refunded", "order_refunded"), ("Order Cancelled", "order_cancelled")],
)
async def test_a_refund_or_cancellation_ends_it_after_the_thank_you(
    shop: Shop, c: str, event: str, reason: str
) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE)
    await shop.sleep(days=1)
    await shop.track(c, event, order_id=f"o-{c}")
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you"]
    assert await result(shop, f"o-{c}") == JourneyResult(exit_reason=reason, sent=["thank_you"])


async def test_a_refund_whose_signal_was_lost_still_stops_the_cross_sell(
    shop: Shop, c: str
) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE)
    await shop.sleep(days=1)
    with shop.sessions() as session:
        placed = session.get(Order, f"o-{c}")
        assert placed is not None
        placed.status = "refunded"
        session.commit()
    await shop.sleep(days=3)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you"]
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("thank_you", "sent", None),
        ("cross_sell", "skipped", "order_refunded"),
    ]


async def test_unsubscribe_ends_every_order_s_journey(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o1-{c}", TEE)
    await order(shop, c, f"o2-{c}", TOTE)
    await shop.sleep(days=1)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=3)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you", "thank_you"]
    for order_id in (f"o1-{c}", f"o2-{c}"):
        assert await result(shop, order_id) == JourneyResult(
            exit_reason="unsubscribed", sent=["thank_you"]
        )


async def test_no_marketing_consent_no_mail(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await shop.identify(c, email=f"{c}@example.com", marketing_consent=False)
    await order(shop, c, f"o-{c}", TEE)
    await shop.sleep(days=4)

    assert shop.outbox_mail() == []
    assert await result(shop, f"o-{c}") == JourneyResult(exit_reason="no_consent", sent=[])


async def test_two_orders_two_journeys_and_a_later_order_ends_neither(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    start = await shop.now()
    first = await order(shop, c, f"o1-{c}", TEE)
    await shop.sleep(days=1)
    second = await order(shop, c, f"o2-{c}", TOTE)
    assert post_purchase_id(f"o1-{c}") in first.started
    assert post_purchase_id(f"o2-{c}") in second.started
    await shop.sleep(days=7)

    mail = shop.outbox_mail()
    assert [(m.step, round((m.at - start) / timedelta(days=1), 3)) for m in mail] == [
        ("thank_you", 0),
        ("thank_you", 1),
        ("cross_sell", 3),
        ("cross_sell", 4),
    ]
    assert f"order o1-{c}" in mail[0].text and f"order o2-{c}" in mail[1].text
    assert f"order o1-{c}" in mail[2].text and f"order o2-{c}" in mail[3].text
    # The tote was bought since: the first order's cross-sell no longer offers it.
    assert shown(mail[2].text) == ["Linen shirt", "Tea mug"]
    for order_id in (f"o1-{c}", f"o2-{c}"):
        assert await result(shop, order_id) == JourneyResult(
            exit_reason="completed", sent=["thank_you", "cross_sell"]
        )


async def test_a_refund_ends_only_its_own_order_s_journey(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o1-{c}", TEE)
    await order(shop, c, f"o2-{c}", SHIRT)
    await shop.sleep(days=1)
    await shop.track(c, "Order Refunded", order_id=f"o2-{c}")
    await shop.sleep(days=3)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you", "thank_you", "cross_sell"]
    assert f"order o1-{c}" in shop.outbox_mail()[2].text
    assert await result(shop, f"o1-{c}") == JourneyResult(
        exit_reason="completed", sent=["thank_you", "cross_sell"]
    )
    assert await result(shop, f"o2-{c}") == JourneyResult(
        exit_reason="order_refunded", sent=["thank_you"]
    )


async def test_the_thank_you_is_never_held_back_the_cross_sell_is(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    day0 = (await env.get_current_time()).astimezone(UTC)
    # Quiet from 1 h to 4 h after the start every day; no more than one e-mail in 16 h.
    quiet = Guardrails.model_validate(
        {
            "min_hours_between": 16,
            "max_per_week": 4,
            "quiet_hours": f"{day0 + timedelta(hours=1):%H:%M}-{day0 + timedelta(hours=4):%H:%M}",
        }
    )
    async with Shop(
        env,
        sqlite_url,
        tmp_path,
        enabled=("abandoned_cart", "post_purchase"),
        guardrails=quiet,
    ) as shop:
        await past_orders(shop, c)
        await shop.identify(c, email=f"{c}@example.com", firstName="Ana", timezone="UTC")
        start = await shop.now()
        await shop.track(c, "Product Added", **TEE, cart_id=f"k-{c}")
        await shop.sleep(hours=1, minutes=15)  # the cart reminder went at 30 min
        ordered = await shop.now()
        await order(shop, c, f"o-{c}", TEE)  # in quiet hours, 45 min after the reminder
        await shop.sleep(days=4)

        mail = shop.outbox_mail()
        assert [m.step for m in mail] == ["reminder", "thank_you", "cross_sell"]
        reminder, thanks, cross_sell = mail
        assert reminder.at - start == pytest.approx(timedelta(minutes=30), abs=SECONDS)
        assert thanks.at - ordered == pytest.approx(timedelta(0), abs=SECONDS)
        # Due 3 days after the order, at 1 h 15 min into that day's quiet hours: at their end.
        quiet_end = (day0 + timedelta(days=3, hours=4)).replace(second=0, microsecond=0)
        assert cross_sell.at - quiet_end == pytest.approx(timedelta(0), abs=SECONDS)


async def test_the_same_order_reported_again_makes_no_second_journey(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE, message_id=f"m1-{c}")
    await shop.sleep(hours=1)
    await order(shop, c, f"o-{c}", TEE, message_id=f"m2-{c}")  # while it runs
    await shop.sleep(days=4)
    await order(shop, c, f"o-{c}", TEE, message_id=f"m3-{c}")  # after it ended
    await shop.sleep(days=4)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you", "cross_sell"]
    assert await result(shop, f"o-{c}") == JourneyResult(
        exit_reason="completed", sent=["thank_you", "cross_sell"]
    )


async def test_cross_sell_with_nothing_to_recommend_is_skipped(shop: Shop, c: str) -> None:
    """The shop's first order: nothing alike, nothing else sold — no bestseller to fall
    back on."""
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE, GLOVES)
    await shop.sleep(days=4)

    assert [m.step for m in shop.outbox_mail()] == ["thank_you"]
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("thank_you", "sent", None),
        ("cross_sell", "skipped", "nothing_to_show"),
    ]
    assert await result(shop, f"o-{c}") == JourneyResult(
        exit_reason="nothing_to_show", sent=["thank_you"]
    )


async def test_cross_sell_falls_back_on_the_shops_bestsellers(shop: Shop, c: str) -> None:
    """Nothing bought with the order nor like it: what sells most, never the order's own."""
    await order(shop, f"{c}-x", f"ox-{c}", MUG, days_ago=20)
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE)
    await shop.sleep(days=4)

    assert [(m.step, shown(m.text)) for m in shop.outbox_mail()] == [
        ("thank_you", ["Organic cotton T-shirt"]),
        ("cross_sell", ["Tea mug"]),
    ]


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await past_orders(shop, c)
    await customer(shop, c)
    await order(shop, c, f"o-{c}", TEE)
    await shop.sleep(days=1)
    await shop.track(c, "Order Refunded", order_id=f"o-{c}")
    await result(shop, f"o-{c}")
    history = await shop.handle(post_purchase_id(f"o-{c}")).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
