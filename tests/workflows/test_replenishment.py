"""Replenishment, as the customer experiences it, on the time-skipping server."""

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

from starter.ids import replenishment_id
from tests.harness import Delivered, Shop
from triggermail.journeys import load_journeys
from triggermail.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
TEE = {
    "product_id": "tee-1",
    "name": "Organic cotton T-shirt",
    "price": 24.9,
    "category": "T-shirts",
    "repurchase_days": 180,
}
BEANS = {"product_id": "beans-1", "name": "Espresso beans", "price": 12, "category": "Coffee"}
DECAF = {"product_id": "beans-2", "name": "Decaf beans", "price": 13, "category": "Coffee"}
TOTE = {"product_id": "tote-2", "name": "Canvas tote", "price": "15.00", "category": "Bags"}
CYCLES = {"Coffee": timedelta(days=30)}
SECONDS = timedelta(seconds=2)
REMINDER = timedelta(days=180 - 15)
"""A T-shirt's 6-month cycle less the 15 days' lead: 5.5 months after the order."""


@asynccontextmanager
async def open_shop(
    env: WorkflowEnvironment, url: str, tmp_path: Path, **replenishment: Any
) -> AsyncIterator[Shop]:
    """A shop with only the replenishment on; ``replenishment`` changes its table."""
    journeys = load_journeys()
    assert journeys.replenishment is not None
    config = journeys.replenishment.model_copy(update={"cycles": CYCLES, **replenishment})
    journeys = journeys.model_copy(update={"replenishment": config})
    async with Shop(env, url, tmp_path, enabled=("replenishment",), journeys=journeys) as shop:
        yield shop


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """The packaged defaults (lead 15 d, matched by product), with a 30-day Coffee cycle."""
    async with open_shop(env, sqlite_url, tmp_path) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer per test: the server is shared, and journeys are keyed by customer."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def buy(shop: Shop, customer: str, *products: dict[str, Any]) -> tuple[str, datetime]:
    """The customer, known by name and address, orders ``products``: the order and its time."""
    await shop.identify(customer, email=f"{customer}@example.com", firstName="Ana")
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    placed = await shop.now()
    await shop.track(customer, "Order Completed", order_id=order_id, products=list(products))
    return order_id, placed


async def result(shop: Shop, customer: str, key: str = "tee-1") -> JourneyResult:
    return await shop.handle(replenishment_id(customer, key)).result()


def on(day: datetime) -> str:
    """The order date as the e-mail writes it (the customer has no timezone)."""
    return f"{day:%b} {day.day}, {day.year}"


def after(mail: Delivered, start: datetime) -> timedelta:
    return mail.at - start


async def test_t_shirt_bought_is_offered_again_at_five_and_a_half_months(
    env: WorkflowEnvironment, store_url: str, tmp_path: Path, c: str
) -> None:
    async with open_shop(env, store_url, tmp_path) as shop:
        await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
        placed = await shop.now()
        entered = await shop.track(c, "Order Completed", order_id=f"o-{c}", products=[TEE])
        assert entered.started == [replenishment_id(c, "tee-1")]
        await shop.sleep(days=164)
        assert shop.outbox_mail() == []
        await shop.sleep(days=60)

        (reminder,) = shop.outbox_mail()
        assert reminder.to == f"Ana <{c}@example.com>"
        assert reminder.step == "reminder"
        assert after(reminder, placed) == pytest.approx(REMINDER, abs=SECONDS)
        assert reminder.subject == "Ana, running low on Organic cotton T-shirt?"
        assert f"You ordered Organic cotton T-shirt on {on(placed)}." in reminder.text
        assert "Reorder now: https://shop.example/products/tee-1?" in reminder.text
        assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])


async def test_a_category_cycle_serves_products_without_their_own(shop: Shop, c: str) -> None:
    _, placed = await buy(shop, c, BEANS)
    await shop.sleep(days=60)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, placed) == pytest.approx(timedelta(days=30 - 15), abs=SECONDS)
    assert reminder.subject == "Ana, running low on Espresso beans?"
    assert await result(shop, c, "beans-1") == JourneyResult(
        exit_reason="completed", sent=["reminder"]
    )


async def test_a_product_without_a_cycle_starts_no_journey(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    entered = await shop.track(c, "Order Completed", order_id=f"o-{c}", products=[TOTE])
    assert entered.started == []
    await shop.sleep(days=400)

    assert shop.outbox_mail() == []


async def test_a_repurchase_before_the_reminder_starts_the_cycle_over(shop: Shop, c: str) -> None:
    _, first = await buy(shop, c, TEE)
    await shop.sleep(days=100)
    _, second = await buy(shop, c, TEE)
    await shop.sleep(days=100)  # past the first order's reminder day
    assert shop.outbox_mail() == []
    await shop.sleep(days=100)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, second) == pytest.approx(REMINDER, abs=SECONDS)
    assert f"on {on(second)}." in reminder.text and on(first) not in reminder.text
    assert [row.step for row in shop.ledger()] == ["reminder"]
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])

    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        history = await shop.handle(replenishment_id(c, "tee-1")).fetch_history()
        (HISTORIES / "replenishment-repurchased-2026-11.json").write_text(history.to_json())


async def test_a_repurchase_after_the_reminder_starts_a_new_cycle(shop: Shop, c: str) -> None:
    _, first = await buy(shop, c, TEE)
    await shop.sleep(days=170)
    _, second = await buy(shop, c, TEE)
    await shop.sleep(days=200)

    one, two = shop.outbox_mail()
    assert after(one, first) == pytest.approx(REMINDER, abs=SECONDS)
    assert after(two, second) == pytest.approx(REMINDER, abs=SECONDS)
    assert f"on {on(first)}." in one.text and f"on {on(second)}." in two.text


async def test_refund_of_the_order_ends_it(shop: Shop, c: str) -> None:
    order, _ = await buy(shop, c, TEE)
    await shop.sleep(days=10)
    await shop.track(c, "Order Refunded", order_id=order)
    await shop.sleep(days=200)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="order_refunded", sent=[])


async def test_cancel_of_the_order_ends_it(shop: Shop, c: str) -> None:
    order, _ = await buy(shop, c, TEE)
    await shop.sleep(hours=1)
    await shop.track(c, "Order Cancelled", order_id=order)
    await shop.sleep(days=200)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="order_cancelled", sent=[])


async def test_refund_of_an_earlier_order_does_not_end_a_later_cycle(shop: Shop, c: str) -> None:
    earlier, _ = await buy(shop, c, TEE)
    await shop.sleep(days=50)
    _, later = await buy(shop, c, TEE)
    await shop.sleep(days=10)
    await shop.track(c, "Order Refunded", order_id=earlier)
    await shop.sleep(days=200)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, later) == pytest.approx(REMINDER, abs=SECONDS)
    assert f"on {on(later)}." in reminder.text
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])


async def test_refund_of_the_later_order_ends_its_cycle(shop: Shop, c: str) -> None:
    await buy(shop, c, TEE)
    await shop.sleep(days=50)
    later, _ = await buy(shop, c, TEE)
    await shop.sleep(days=10)
    await shop.track(c, "Order Refunded", order_id=later)
    await shop.sleep(days=200)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="order_refunded", sent=[])


async def test_matched_by_category_another_product_of_it_is_the_repurchase(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    async with open_shop(env, sqlite_url, tmp_path, match="category") as shop:
        await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
        entered = await shop.track(c, "Order Completed", order_id=f"o1-{c}", products=[BEANS])
        assert entered.started == [replenishment_id(c, "category:Coffee")]
        await shop.sleep(days=10)
        _, second = await buy(shop, c, DECAF)
        await shop.sleep(days=60)

        (reminder,) = shop.outbox_mail()
        assert after(reminder, second) == pytest.approx(timedelta(days=15), abs=SECONDS)
        assert reminder.subject == "Ana, running low on Decaf beans?"
        assert "Espresso beans" not in reminder.text
        assert await result(shop, c, "category:Coffee") == JourneyResult(
            exit_reason="completed", sent=["reminder"]
        )


async def test_matched_by_category_a_refund_of_the_order_ends_it(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    async with open_shop(env, sqlite_url, tmp_path, match="category") as shop:
        order, _ = await buy(shop, c, BEANS, DECAF)
        await shop.sleep(days=1)
        await shop.track(c, "Order Refunded", order_id=order)
        await shop.sleep(days=60)

        assert shop.outbox_mail() == []
        assert await result(shop, c, "category:Coffee") == JourneyResult(
            exit_reason="order_refunded", sent=[]
        )


async def test_matched_by_product_another_product_of_the_category_is_not(
    shop: Shop, c: str
) -> None:
    _, first = await buy(shop, c, BEANS)
    await shop.sleep(days=10)
    _, second = await buy(shop, c, DECAF)
    await shop.sleep(days=60)

    one, two = shop.outbox_mail()
    assert (one.subject, two.subject) == (
        "Ana, running low on Espresso beans?",
        "Ana, running low on Decaf beans?",
    )
    assert after(one, first) == pytest.approx(timedelta(days=15), abs=SECONDS)
    assert after(two, second) == pytest.approx(timedelta(days=15), abs=SECONDS)


async def test_two_products_with_cycles_in_one_order_run_two_journeys(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    placed = await shop.now()
    entered = await shop.track(c, "Order Completed", order_id=f"o-{c}", products=[TEE, BEANS, TOTE])
    assert sorted(entered.started) == [
        replenishment_id(c, "beans-1"),
        replenishment_id(c, "tee-1"),
    ]
    await shop.sleep(days=200)

    beans, tee = shop.outbox_mail()
    assert beans.subject == "Ana, running low on Espresso beans?"
    assert tee.subject == "Ana, running low on Organic cotton T-shirt?"
    assert after(beans, placed) == pytest.approx(timedelta(days=15), abs=SECONDS)
    assert after(tee, placed) == pytest.approx(REMINDER, abs=SECONDS)


async def test_status_query_shows_the_reminder_due_at_five_and_a_half_months(
    shop: Shop, c: str
) -> None:
    order, placed = await buy(shop, c, TEE)
    await shop.sleep(days=1)
    handle = shop.handle(replenishment_id(c, "tee-1"))
    status = await handle.query("status")
    assert status["journey"] == "replenishment" and status["sent"] == []
    assert status["next_step"] == "reminder" and status["waiting_for"] == "a repurchase"
    due = datetime.fromisoformat(status["next_send_at"])
    assert due - placed == pytest.approx(REMINDER, abs=SECONDS)
    await shop.track(c, "Order Cancelled", order_id=order)
    assert await result(shop, c) == JourneyResult(exit_reason="order_cancelled", sent=[])


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await buy(shop, c, TEE)
    await shop.sleep(days=30)
    await buy(shop, c, TEE)
    await shop.sleep(days=200)
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])
    history = await shop.handle(replenishment_id(c, "tee-1")).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


async def test_unsubscribe_ends_it(shop: Shop, c: str) -> None:
    await buy(shop, c, TEE)
    await shop.sleep(days=30)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=200)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="unsubscribed", sent=[])


async def test_a_repurchase_between_two_steps_starts_the_next_cycle_instead(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    journeys = load_journeys()
    assert journeys.replenishment is not None
    (reminder_step,) = journeys.replenishment.steps
    last_call = reminder_step.model_copy(update={"name": "last_call", "after": timedelta(days=10)})
    steps = [reminder_step, last_call]
    async with open_shop(env, sqlite_url, tmp_path, steps=steps) as shop:
        _, first = await buy(shop, c, TEE)
        await shop.sleep(days=170)
        _, second = await buy(shop, c, TEE)
        await shop.sleep(days=200)

        mail = shop.outbox_mail()
        assert [m.step for m in mail] == ["reminder", "reminder", "last_call"]
        one, two, three = mail
        assert after(one, first) == pytest.approx(REMINDER, abs=SECONDS)
        assert after(two, second) == pytest.approx(REMINDER, abs=SECONDS)
        assert after(three, second) == pytest.approx(REMINDER + timedelta(days=10), abs=SECONDS)
        assert f"on {on(second)}." in two.text and f"on {on(second)}." in three.text
