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
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.harness import Delivered, Shop
from triggermail.ids import replenishment_id
from triggermail.journeys import load_journeys
from triggermail.store import Order, OrderLine
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.replenishment import REORDER_AFTER_EXIT
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
LAST_CALL = timedelta(days=10)
"""After the reminder, in the two-step table of :func:`two_steps`."""


@asynccontextmanager
async def open_shop(
    env: WorkflowEnvironment,
    url: str,
    tmp_path: Path,
    *,
    workflow_cache: int | None = None,
    **replenishment: Any,
) -> AsyncIterator[Shop]:
    """A shop with only the replenishment on; ``replenishment`` changes its table,
    ``workflow_cache`` the worker's setting."""
    journeys = load_journeys()
    assert journeys.replenishment is not None
    config = journeys.replenishment.model_copy(update={"cycles": CYCLES, **replenishment})
    journeys = journeys.model_copy(update={"replenishment": config})
    shop = Shop(env, url, tmp_path, enabled=("replenishment",), journeys=journeys)
    if workflow_cache is not None:
        shop.settings = shop.settings.model_copy(update={"workflow_cache": workflow_cache})
    async with shop:
        yield shop


def two_steps() -> dict[str, Any]:
    """The packaged reminder, then a ``last_call`` :data:`LAST_CALL` after it."""
    journeys = load_journeys()
    assert journeys.replenishment is not None
    (reminder,) = journeys.replenishment.steps
    return {
        "steps": [reminder, reminder.model_copy(update={"name": "last_call", "after": LAST_CALL})]
    }


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """The packaged defaults (lead 15 d, matched by product), with a 30-day Coffee cycle."""
    async with open_shop(env, sqlite_url, tmp_path) as shop:
        yield shop


@pytest.fixture
async def two_step_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    """The packaged defaults with :func:`two_steps`."""
    async with open_shop(env, sqlite_url, tmp_path, **two_steps()) as shop:
        yield shop


@pytest.fixture
async def uncached_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    """The packaged defaults on a worker that keeps no journey in memory, for
    :func:`one_workflow_task`."""
    async with open_shop(env, sqlite_url, tmp_path, workflow_cache=0) as shop:
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


def records_patch(history: WorkflowHistory, patch_id: str) -> bool:
    """Whether the run recorded the patch (its marker names it)."""
    return any(
        patch_id.encode() in e.marker_recorded_event_attributes.SerializeToString()
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    )


@asynccontextmanager
async def one_workflow_task(shop: Shop) -> AsyncIterator[None]:
    """Events sent meanwhile reach their journeys in one workflow task, as they do when the
    second arrives before the worker has run the journey on the first: the worker is away
    until then.

    The worker must keep no journey in memory (``workflow_cache=0``): the time-skipping
    server would hand a cached journey's next task to the stopped worker's sticky queue,
    and never time it out to the new worker.
    """
    assert shop.settings.workflow_cache == 0, "open the shop with workflow_cache=0"
    assert shop.worker is not None
    await shop.worker.__aexit__(None, None, None)
    try:
        yield
    finally:
        await shop.__aenter__()  # a new worker, as after a deploy


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
    # The reorder-after-cancel patch is asked only when that happens.
    assert not records_patch(history, REORDER_AFTER_EXIT)


async def test_unsubscribe_ends_it(shop: Shop, c: str) -> None:
    await buy(shop, c, TEE)
    await shop.sleep(days=30)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=200)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="unsubscribed", sent=[])


async def test_a_repurchase_between_two_steps_starts_the_next_cycle_instead(
    two_step_shop: Shop, c: str
) -> None:
    shop = two_step_shop
    _, first = await buy(shop, c, TEE)
    await shop.sleep(days=170)
    _, second = await buy(shop, c, TEE)
    await shop.sleep(days=200)

    mail = shop.outbox_mail()
    assert [m.step for m in mail] == ["reminder", "reminder", "last_call"]
    one, two, three = mail
    assert after(one, first) == pytest.approx(REMINDER, abs=SECONDS)
    assert after(two, second) == pytest.approx(REMINDER, abs=SECONDS)
    assert after(three, second) == pytest.approx(REMINDER + LAST_CALL, abs=SECONDS)
    assert f"on {on(second)}." in two.text and f"on {on(second)}." in three.text


async def test_a_reorder_right_after_a_cancel_keeps_its_cycle(uncached_shop: Shop, c: str) -> None:
    """Cancel-and-reorder (to change size), both before the journey ran on the cancel:
    it had accepted the cancel for the order it then counted from."""
    shop = uncached_shop
    workflow_id = replenishment_id(c, "tee-1")
    cancelled, first = await buy(shop, c, TEE)
    first_run = (await shop.handle(workflow_id).describe()).run_id
    await shop.sleep(days=100)
    async with one_workflow_task(shop):
        await shop.track(c, "Order Cancelled", order_id=cancelled)
        _, second = await buy(shop, c, TEE)
    await shop.sleep(days=100)  # past the cancelled order's reminder day
    assert shop.outbox_mail() == []
    await shop.sleep(days=100)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, second) == pytest.approx(REMINDER, abs=SECONDS)
    assert f"on {on(second)}." in reminder.text and on(first) not in reminder.text
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])

    # The run that took the cancel went on from the reorder in a new run, behind the patch.
    history = await shop.env.client.get_workflow_handle(
        workflow_id, run_id=first_run
    ).fetch_history()
    assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert records_patch(history, REORDER_AFTER_EXIT)
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        path = HISTORIES / "replenishment-reorder_after_cancel-2026-11.json"
        path.write_text(history.to_json())


async def test_a_reorder_then_the_cancel_of_the_earlier_order_keeps_its_cycle(
    uncached_shop: Shop, c: str
) -> None:
    """The other way round: the cancel names an order the journey no longer counts from."""
    shop = uncached_shop
    cancelled, _ = await buy(shop, c, TEE)
    await shop.sleep(days=100)
    async with one_workflow_task(shop):
        _, second = await buy(shop, c, TEE)
        await shop.track(c, "Order Cancelled", order_id=cancelled)
    await shop.sleep(days=200)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, second) == pytest.approx(REMINDER, abs=SECONDS)
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["reminder"])


async def test_a_cancel_of_the_reorder_too_ends_it(uncached_shop: Shop, c: str) -> None:
    shop = uncached_shop
    first, _ = await buy(shop, c, TEE)
    await shop.sleep(days=100)
    async with one_workflow_task(shop):
        await shop.track(c, "Order Cancelled", order_id=first)
        second, _ = await buy(shop, c, TEE)
        await shop.track(c, "Order Cancelled", order_id=second)

    await shop.sleep(hours=1)
    # At once: no run waits for the cancelled reorder's reminder day to find it cancelled.
    history = await shop.handle(replenishment_id(c, "tee-1")).fetch_history()
    assert history.events[-1].HasField("workflow_execution_completed_event_attributes")
    assert await result(shop, c) == JourneyResult(exit_reason="order_cancelled", sent=[])
    await shop.sleep(days=200)
    assert shop.outbox_mail() == []
    assert shop.ledger() == []


@pytest.mark.parametrize("event", ["Order Cancelled", "Order Refunded"])
async def test_a_reorder_right_after_a_cancel_between_two_steps_starts_its_cycle(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str, event: str
) -> None:
    async with open_shop(env, sqlite_url, tmp_path, workflow_cache=0, **two_steps()) as shop:
        exited, first = await buy(shop, c, TEE)
        await shop.sleep(days=170)  # the reminder went, the last call is due in 5 days
        async with one_workflow_task(shop):
            await shop.track(c, event, order_id=exited)
            _, second = await buy(shop, c, TEE)
        await shop.sleep(days=200)

        mail = shop.outbox_mail()
        assert [m.step for m in mail] == ["reminder", "reminder", "last_call"]
        one, two, three = mail
        assert after(one, first) == pytest.approx(REMINDER, abs=SECONDS)
        assert after(two, second) == pytest.approx(REMINDER, abs=SECONDS)
        assert after(three, second) == pytest.approx(REMINDER + LAST_CALL, abs=SECONDS)
        assert f"on {on(second)}." in two.text and f"on {on(second)}." in three.text
        # The exited order's last call was not even tried.
        assert [row.step for row in shop.ledger()] == ["reminder", "reminder", "last_call"]
        assert await result(shop, c) == JourneyResult(
            exit_reason="completed", sent=["reminder", "last_call"]
        )


async def test_a_repurchase_whose_signal_was_lost_still_stops_the_reminder(
    shop: Shop, c: str
) -> None:
    """The reorder is in the store, its signal never came: the send re-checks."""
    await buy(shop, c, TEE)
    await shop.sleep(days=100)
    with shop.sessions() as session:
        again = Order(id=f"o2-{c}", customer_id=c, placed_at=await shop.now())
        again.lines.append(OrderLine(product_id=TEE["product_id"]))
        session.add(again)
        session.commit()
    await shop.sleep(days=100)

    assert shop.outbox_mail() == []
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("reminder", "skipped", "repurchased")
    ]
    assert await result(shop, c) == JourneyResult(exit_reason="repurchased", sent=[])


async def test_a_product_sold_out_at_reminder_time_is_not_offered(shop: Shop, c: str) -> None:
    await buy(shop, c, TEE)
    await shop.sleep(days=100)
    # The catalogue says so with another customer's view.
    await shop.track(f"{c}-other", "Product Viewed", **{**TEE, "stock": 0})
    await shop.sleep(days=100)

    assert shop.outbox_mail() == []
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("reminder", "skipped", "nothing_to_show")
    ]
    assert await result(shop, c) == JourneyResult(exit_reason="nothing_to_show", sent=[])


async def test_refund_between_two_steps_ends_it(two_step_shop: Shop, c: str) -> None:
    shop = two_step_shop
    order, placed = await buy(shop, c, TEE)
    await shop.sleep(days=170)
    await shop.track(c, "Order Refunded", order_id=order)
    await shop.sleep(days=30)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, placed) == pytest.approx(REMINDER, abs=SECONDS)
    assert await result(shop, c) == JourneyResult(exit_reason="order_refunded", sent=["reminder"])


async def test_unsubscribe_between_two_steps_ends_it(two_step_shop: Shop, c: str) -> None:
    shop = two_step_shop
    _, placed = await buy(shop, c, TEE)
    await shop.sleep(days=170)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)
    await shop.sleep(days=30)

    (reminder,) = shop.outbox_mail()
    assert after(reminder, placed) == pytest.approx(REMINDER, abs=SECONDS)
    assert await result(shop, c) == JourneyResult(exit_reason="unsubscribed", sent=["reminder"])
