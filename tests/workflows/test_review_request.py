"""Review request, as the customer experiences it, on the time-skipping server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.harness import Delivered, Shop
from triggermail.ids import review_request_id
from triggermail.journeys import load_journeys
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}
TOTE = {"product_id": "tote-2", "name": "Canvas tote", "price": "15.00"}
BONUS = "As a thank-you for your review: 10 % off your next order."
SECONDS = timedelta(seconds=2)


@asynccontextmanager
async def open_shop(
    env: WorkflowEnvironment, url: str, tmp_path: Path, **review: Any
) -> AsyncIterator[Shop]:
    """A shop with only the review request on; ``review`` changes its table."""
    journeys = load_journeys()
    assert journeys.review_request is not None
    config = journeys.review_request.model_copy(update=review)
    journeys = journeys.model_copy(update={"review_request": config})
    async with Shop(env, url, tmp_path, enabled=("review_request",), journeys=journeys) as shop:
        yield shop


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """The packaged defaults: delivery assumed 5 days after the order, a bonus for a review."""
    async with open_shop(env, sqlite_url, tmp_path) as shop:
        yield shop


@pytest.fixture
async def delivered_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    """A shop that sends Order Delivered: no expected delivery, only the event starts it."""
    async with open_shop(env, sqlite_url, tmp_path, expected_delivery=None) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer per test: the server is shared, and an order's ID is used once ever."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def order(shop: Shop, customer: str, order_id: str, *products: dict[str, Any]) -> None:
    await shop.track(customer, "Order Completed", order_id=order_id, products=list(products))


async def buy(shop: Shop, customer: str, *products: dict[str, Any]) -> str:
    """The customer, known by name and address, orders ``products``; the order's id."""
    await shop.identify(customer, email=f"{customer}@example.com", firstName="Ana")
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    await order(shop, customer, order_id, *(products or (TEE,)))
    return order_id


async def result(shop: Shop, order_id: str) -> JourneyResult:
    return await shop.handle(review_request_id(order_id)).result()


def after(mail: Delivered, start: datetime) -> timedelta:
    return mail.at - start


async def test_delivered_order_is_asked_about_3_days_after_delivery_and_reminded_at_7(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TEE, TOTE)
    await shop.sleep(days=2)
    delivered_at = await shop.now()
    entered = await shop.track(c, "Order Delivered", order_id=ordered)
    assert entered.started == [review_request_id(ordered)]
    await shop.sleep(days=3, hours=-1)
    assert shop.outbox_mail() == []
    await shop.sleep(days=30)

    mail = shop.outbox_mail()
    assert [(m.to, m.step) for m in mail] == [
        (f"Ana <{c}@example.com>", "ask"),
        (f"Ana <{c}@example.com>", "reminder"),
    ]
    ask, reminder = mail
    assert after(ask, delivered_at) == pytest.approx(timedelta(days=3), abs=SECONDS)
    assert after(reminder, delivered_at) == pytest.approx(timedelta(days=7), abs=SECONDS)
    assert ask.subject == "Ana, what do you think of your order?"
    assert reminder.subject == "Ana, a minute for a review?"
    for mail_ in (ask, reminder):
        assert ordered in mail_.text and BONUS in mail_.text
        assert "- Organic cotton T-shirt\n" in mail_.text and "- Canvas tote\n" in mail_.text
        assert "https://shop.example/products/tee-1/reviews/new?" in mail_.text
        assert "https://shop.example/products/tote-2/reviews/new?" in mail_.text
    assert "We will not ask again." in reminder.text
    assert await result(shop, ordered) == JourneyResult(
        exit_reason="completed", sent=["ask", "reminder"]
    )
    reviewed = await shop.track(c, "Product Reviewed", product_id="tee-1", rating=5)
    assert reviewed.started == []  # the journey is over: nothing to end, nothing refused

    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        history = await shop.handle(review_request_id(ordered)).fetch_history()
        (HISTORIES / "review_request-completed-2026-11.json").write_text(history.to_json())


async def test_no_order_delivered_asks_3_days_after_the_expected_delivery(
    shop: Shop, c: str
) -> None:
    start = await shop.now()
    ordered = await buy(shop, c)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert (ask.step, reminder.step) == ("ask", "reminder")
    assert after(ask, start) == pytest.approx(timedelta(days=5 + 3), abs=SECONDS)
    assert after(reminder, start) == pytest.approx(timedelta(days=5 + 7), abs=SECONDS)
    assert "Organic cotton T-shirt" in ask.text and ordered in ask.text
    assert await result(shop, ordered) == JourneyResult(
        exit_reason="completed", sent=["ask", "reminder"]
    )


async def test_a_delivery_earlier_than_expected_moves_the_ask_to_3_days_after_it(
    shop: Shop, c: str
) -> None:
    ordered = await buy(shop, c)
    await shop.sleep(days=2)
    delivered_at = await shop.now()
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert after(ask, delivered_at) == pytest.approx(timedelta(days=3), abs=SECONDS)
    assert after(reminder, delivered_at) == pytest.approx(timedelta(days=7), abs=SECONDS)


async def test_a_delivery_later_than_expected_moves_the_ask_to_3_days_after_it(
    shop: Shop, c: str
) -> None:
    ordered = await buy(shop, c)
    await shop.sleep(days=6)  # a day late, before the ask the expected delivery would time
    delivered_at = await shop.now()
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert after(ask, delivered_at) == pytest.approx(timedelta(days=3), abs=SECONDS)
    assert after(reminder, delivered_at) == pytest.approx(timedelta(days=7), abs=SECONDS)


async def test_a_repeated_delivery_report_does_not_move_the_ask(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    await shop.sleep(days=1)
    delivered_at = await shop.now()
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=2)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert after(ask, delivered_at) == pytest.approx(timedelta(days=3), abs=SECONDS)
    assert after(reminder, delivered_at) == pytest.approx(timedelta(days=7), abs=SECONDS)


async def test_a_delivery_reported_before_its_order_counts_once_the_order_comes(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    ordered = f"o-{uuid.uuid4().hex[:8]}"
    delivered_at = await shop.now()
    delivered = await shop.track(c, "Order Delivered", order_id=ordered)
    assert delivered.started == []  # nothing known to review yet
    await shop.sleep(hours=1)
    placed = await shop.track(c, "Order Completed", order_id=ordered, products=[TEE])
    assert placed.started == [review_request_id(ordered)]
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert after(ask, delivered_at) == pytest.approx(timedelta(days=3), abs=SECONDS)
    assert after(reminder, delivered_at) == pytest.approx(timedelta(days=7), abs=SECONDS)


async def test_every_product_reviewed_before_the_ask_ends_it_without_mail(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TEE, TOTE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=1)
    await shop.track(c, "Product Reviewed", product_id="tee-1", rating=5)
    await shop.sleep(hours=1)
    await shop.track(c, "Product Reviewed", product_id="tote-2", rating=4)
    await shop.sleep(days=30)

    assert shop.outbox_mail() == []
    assert await result(shop, ordered) == JourneyResult(exit_reason="reviewed", sent=[])


async def test_one_of_two_products_reviewed_the_ask_shows_only_the_other(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TEE, TOTE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=1)
    await shop.track(c, "Product Reviewed", product_id="tee-1", rating=5)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    for mail in (ask, reminder):
        assert "Canvas tote" in mail.text and "tote-2/reviews/new" in mail.text
        assert "Organic cotton T-shirt" not in mail.text and "tee-1" not in mail.text
    assert await result(shop, ordered) == JourneyResult(
        exit_reason="completed", sent=["ask", "reminder"]
    )


async def test_a_review_after_the_ask_means_no_reminder(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=4)
    await shop.track(c, "Product Reviewed", product_id="tee-1", rating=5)
    await shop.sleep(days=30)

    assert [m.step for m in shop.outbox_mail()] == ["ask"]
    assert await result(shop, ordered) == JourneyResult(exit_reason="reviewed", sent=["ask"])


async def test_a_review_of_another_product_changes_nothing(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=1)
    await shop.track(c, "Product Reviewed", product_id="mug-9", name="Mug", rating=3)
    await shop.sleep(days=30)

    assert [m.step for m in shop.outbox_mail()] == ["ask", "reminder"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [("Order Refunded", "order_refunded"), ("Order Cancelled", "order_cancelled")],
)
@pytest.mark.parametrize(
    ("days", "sent"),
    [(1, []), (6, []), (10, ["ask"])],
    ids=["before-delivery", "before-the-ask", "before-the-reminder"],
)
async def test_refund_or_cancel_ends_it_at_each_point(
    shop: Shop, c: str, event: str, reason: str, days: int, sent: list[str]
) -> None:
    ordered = await buy(shop, c)  # delivery assumed at +5 d: ask at +8 d, reminder at +12 d
    await shop.sleep(days=days)
    await shop.track(c, event, order_id=ordered)
    await shop.sleep(days=30)

    assert [m.step for m in shop.outbox_mail()] == sent
    assert await result(shop, ordered) == JourneyResult(exit_reason=reason, sent=sent)


async def test_refund_before_delivery_means_the_delivery_starts_nothing(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    await shop.sleep(days=1)
    await shop.track(c, "Order Refunded", order_id=ordered)
    delivered = await shop.track(c, "Order Delivered", order_id=ordered)
    assert delivered.started == []
    await shop.sleep(days=30)

    assert shop.outbox_mail() == []


async def test_two_orders_get_two_review_requests(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    first = await buy(shop, c, TEE)
    await shop.sleep(days=1)
    second = await buy(shop, c, TOTE)
    await shop.track(c, "Order Delivered", order_id=first)
    await shop.sleep(days=1)
    second_delivered = await shop.now()
    entered = await shop.track(c, "Order Delivered", order_id=second)
    assert entered.started == [review_request_id(second)]
    await shop.sleep(days=30)

    mail = shop.outbox_mail()
    assert [m.step for m in mail] == ["ask", "ask", "reminder", "reminder"]
    about_first = [m for m in mail if first in m.text]
    about_second = [m for m in mail if second in m.text]
    assert [m.step for m in about_first] == ["ask", "reminder"]
    assert all("Organic cotton T-shirt" in m.text for m in about_first)
    assert [m.step for m in about_second] == ["ask", "reminder"]
    assert all("Canvas tote" in m.text for m in about_second)
    assert after(about_second[0], second_delivered) == pytest.approx(timedelta(days=3), abs=SECONDS)
    for order_id in (first, second):
        assert await result(shop, order_id) == JourneyResult(
            exit_reason="completed", sent=["ask", "reminder"]
        )


async def test_a_refund_of_one_order_ends_only_its_own_request(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    first = await buy(shop, c, TEE)
    second = await buy(shop, c, TOTE)
    await shop.track(c, "Order Delivered", order_id=first)
    await shop.track(c, "Order Delivered", order_id=second)
    await shop.sleep(days=1)
    await shop.track(c, "Order Refunded", order_id=first)
    await shop.sleep(days=30)

    assert [m.step for m in shop.outbox_mail()] == ["ask", "reminder"]
    assert all(second in m.text for m in shop.outbox_mail())
    assert await result(shop, first) == JourneyResult(exit_reason="order_refunded", sent=[])


async def test_a_delivery_reported_after_the_ask_leaves_the_reminder_where_it_was(
    shop: Shop, c: str
) -> None:
    start = await shop.now()
    ordered = await buy(shop, c)
    await shop.sleep(days=9)  # the ask went at 5 + 3 days, from the expected delivery
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    assert after(ask, start) == pytest.approx(timedelta(days=5 + 3), abs=SECONDS)
    assert after(reminder, start) == pytest.approx(timedelta(days=5 + 7), abs=SECONDS)


async def test_every_product_reviewed_before_the_expected_delivery_ends_it(
    shop: Shop, c: str
) -> None:
    ordered = await buy(shop, c, TEE)
    await shop.sleep(days=2)
    await shop.track(c, "Product Reviewed", product_id=TEE["product_id"], rating=5)
    await shop.sleep(days=30)

    assert shop.outbox_mail() == []
    assert await result(shop, ordered) == JourneyResult(exit_reason="reviewed", sent=[])


async def test_no_bonus_configured_no_bonus_line(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    async with open_shop(env, sqlite_url, tmp_path, expected_delivery=None, bonus=None) as shop:
        ordered = await buy(shop, c)
        await shop.track(c, "Order Delivered", order_id=ordered)
        await shop.sleep(days=30)

        ask, reminder = shop.outbox_mail()
        for mail in (ask, reminder):
            assert "thank-you for your review" not in mail.text
            assert "Organic cotton T-shirt" in mail.text


async def test_no_marketing_consent_means_no_mail(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    await shop.identify(c, email=f"{c}@example.com", marketing_consent=False)
    ordered = f"o-{uuid.uuid4().hex[:8]}"
    await order(shop, c, ordered, TEE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    assert shop.outbox_mail() == []
    assert await result(shop, ordered) == JourneyResult(exit_reason="no_consent", sent=[])


async def test_status_query_shows_the_ask_waiting_for_the_delivery(
    delivered_shop: Shop, c: str
) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    delivered_at = await shop.now()
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(hours=1)
    status = await shop.handle(review_request_id(ordered)).query("status")
    assert status["journey"] == "review_request" and status["sent"] == []
    assert status["next_step"] == "ask" and status["waiting_for"] == "reviews"
    due = datetime.fromisoformat(status["next_send_at"])
    assert due - delivered_at == pytest.approx(timedelta(days=3), abs=SECONDS)
    await shop.track(c, "Order Cancelled", order_id=ordered)
    await result(shop, ordered)


async def test_fresh_history_replays(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TEE, TOTE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=4)
    await shop.track(c, "Product Reviewed", product_id="tee-1", rating=5)
    await shop.track(c, "Product Reviewed", product_id="tote-2", rating=5)
    assert await result(shop, ordered) == JourneyResult(exit_reason="reviewed", sent=["ask"])
    history = await shop.handle(review_request_id(ordered)).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


async def test_a_product_sold_out_since_is_still_asked_about(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TEE, TOTE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=1)
    # The shop's catalogue, as its events carry it: the customer had the last one.
    await shop.track(c, "Product Viewed", product_id="tee-1", stock=0)
    await shop.sleep(days=30)

    ask, reminder = shop.outbox_mail()
    for mail in (ask, reminder):
        assert "Organic cotton T-shirt" in mail.text and "Canvas tote" in mail.text


async def test_the_ask_lists_the_products_as_the_order_did(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c, TOTE, TEE)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=30)

    for mail in shop.outbox_mail():
        assert mail.text.index("- Canvas tote\n") < mail.text.index("- Organic cotton T-shirt\n")


async def test_unsubscribe_ends_it(delivered_shop: Shop, c: str) -> None:
    shop = delivered_shop
    ordered = await buy(shop, c)
    await shop.track(c, "Order Delivered", order_id=ordered)
    await shop.sleep(days=4)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=30)

    assert [m.step for m in shop.outbox_mail()] == ["ask"]
    assert await result(shop, ordered) == JourneyResult(exit_reason="unsubscribed", sent=["ask"])
