"""Abandoned cart, as the customer experiences it, on the time-skipping server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from triggermail.store import Order
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"

TEE = {
    "product_id": "tee-1",
    "name": "Organic cotton T-shirt",
    "price": 24.9,
    "url": "https://shop.example/p/tee-1",
    "image_url": "https://shop.example/i/tee-1.jpg",
    "cart_id": "cart-1",
}
TOTE = {"product_id": "tote-2", "name": "Canvas tote", "price": "15.00", "cart_id": "cart-1"}


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path) as shop:
        yield shop


async def abandon(shop: Shop, customer: str = "c-1", **product: object) -> None:
    await shop.identify(customer, email=f"{customer}@example.com", firstName="Ana")
    await shop.track(customer, "Product Added", **(product or TEE))


async def record_history(shop: Shop, name: str) -> None:
    """Refresh ``tests/histories/<name>.json`` when TRIGGERMAIL_RECORD_HISTORIES is set.

    Only for a deliberate change of the journey's commands (with ``workflow.patched``):
    the old files must keep replaying, so record new scenarios under new names.
    """
    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        history = await shop.handle(abandoned_cart_id("c-1")).fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def result(shop: Shop, customer: str = "c-1") -> JourneyResult:
    return await shop.handle(abandoned_cart_id(customer)).result()


async def test_no_purchase_gets_reminder_at_30_min_then_incentive_a_day_later(shop: Shop) -> None:
    start = await shop.now()
    await abandon(shop)
    await shop.sleep(days=7)

    mail = shop.outbox_mail()
    assert [m.step for m in mail] == ["reminder", "incentive"]
    reminder, incentive = mail
    assert reminder.to == "Ana <c-1@example.com>"
    assert reminder.subject == "Ana, you left something in your cart"
    assert "Organic cotton T-shirt: €24.90" in reminder.text
    assert "Ana" in reminder.text and "help@shop.example" in reminder.text
    assert reminder.at - start == pytest.approx(timedelta(minutes=30), abs=timedelta(seconds=2))
    assert incentive.at - reminder.at == pytest.approx(
        timedelta(hours=24), abs=timedelta(seconds=2)
    )
    assert incentive.subject.startswith("10% off your cart")
    coupon = next(row.coupon_code for row in shop.ledger() if row.step == "incentive")
    assert coupon and coupon in incentive.text
    assert await result(shop) == JourneyResult(
        exit_reason="completed", sent=["reminder", "incentive"]
    )

    await record_history(shop, "abandoned_cart-no_purchase-2026-11")


async def test_a_new_journey_records_one_patch_and_none_while_sending(shop: Shop) -> None:
    """Each patch costs a journey a marker and a ``TemporalChangeVersion`` upsert; new
    journeys record only ``journeys-2026-11``, at entry, so a send's workflow task carries
    none. A new patch belongs behind it or folded into the next one (deploy/README.md)."""
    await abandon(shop)
    await shop.sleep(days=7)
    await result(shop)
    events = (await shop.handle(abandoned_cart_id("c-1")).fetch_history()).events
    markers = [e for e in events if e.HasField("marker_recorded_event_attributes")]
    assert len(markers) == 1
    assert b"journeys-2026-11" in markers[0].marker_recorded_event_attributes.SerializeToString()
    first_activity = next(
        e for e in events if e.HasField("activity_task_scheduled_event_attributes")
    )
    assert markers[0].event_id < first_activity.event_id
    upserts = [
        e for e in events if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    # Entry (the patch's upsert and ours), the incentive's wait, the end: nothing per send.
    assert len(upserts) == 4


async def test_purchase_within_ten_minutes_sends_nothing(shop: Shop) -> None:
    await abandon(shop)
    await shop.sleep(minutes=10)
    await shop.track("c-1", "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await shop.sleep(days=7)

    assert shop.outbox_mail() == []
    assert await result(shop) == JourneyResult(exit_reason="purchase", sent=[])


async def test_purchase_between_steps_stops_after_the_reminder(shop: Shop) -> None:
    await abandon(shop)
    await shop.sleep(hours=2)
    await shop.track("c-1", "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["reminder"]
    assert await result(shop) == JourneyResult(exit_reason="purchase", sent=["reminder"])
    await record_history(shop, "abandoned_cart-purchase_after_reminder-2026-11")


async def test_cart_change_restarts_the_quiet_window_and_mail_shows_latest_cart(shop: Shop) -> None:
    start = await shop.now()
    await abandon(shop)
    await shop.sleep(minutes=20)
    await shop.track("c-1", "Product Added", **TOTE)
    await shop.sleep(minutes=20)
    assert shop.outbox_mail() == []  # 40 min after entry, but only 20 after the last change
    await shop.sleep(minutes=15)

    (reminder,) = shop.outbox_mail()
    assert reminder.at - start == pytest.approx(timedelta(minutes=50), abs=timedelta(seconds=2))
    assert "Organic cotton T-shirt: €24.90" in reminder.text
    assert "Canvas tote: €15.00" in reminder.text
    assert "Total: €39.90" in reminder.text


async def test_removing_an_item_shows_what_is_left(shop: Shop) -> None:
    await abandon(shop)
    await shop.track("c-1", "Product Added", **TOTE)
    await shop.track("c-1", "Product Removed", product_id="tee-1", cart_id="cart-1")
    await shop.sleep(minutes=31)

    (reminder,) = shop.outbox_mail()
    assert "Canvas tote" in reminder.text
    assert "T-shirt" not in reminder.text


async def test_emptied_cart_ends_the_journey(shop: Shop) -> None:
    await abandon(shop)
    await shop.sleep(minutes=5)
    await shop.track("c-1", "Product Removed", product_id="tee-1", cart_id="cart-1")
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert await result(shop) == JourneyResult(exit_reason="cart_emptied", sent=[])


async def test_the_same_event_twice_makes_one_journey_and_one_set_of_emails(shop: Shop) -> None:
    await shop.identify("c-1", email="c-1@example.com", firstName="Ana")
    added = {
        "type": "track",
        "userId": "c-1",
        "event": "Product Added",
        "messageId": "same-message",
        "timestamp": (await shop.now()).isoformat(),
        "properties": TEE,
    }
    first = await shop.send(dict(added))
    second = await shop.send(dict(added))
    assert (first.duplicate, second.duplicate) == (False, True)
    assert (second.started, second.signalled) == ([], [])
    await shop.sleep(days=3)

    assert [m.step for m in shop.outbox_mail()] == ["reminder", "incentive"]
    with shop.sessions() as session:
        from triggermail.store import CartLine

        assert [line.quantity for line in session.query(CartLine)] == [1]


async def test_order_in_store_without_a_signal_is_never_mailed(shop: Shop) -> None:
    """The purchase signal is lost; the send activity's re-check of the store still stops it."""
    await abandon(shop)
    await shop.sleep(minutes=10)
    with shop.sessions() as session:
        session.add(
            Order(id="o-lost", customer_id="c-1", placed_at=await shop.now(), total=Decimal("24.9"))
        )
        session.commit()
    await shop.sleep(days=3)

    assert shop.outbox_mail() == []
    (row,) = shop.ledger()
    assert (row.step, row.status, row.reason) == ("reminder", "skipped", "converted")
    assert await result(shop) == JourneyResult(exit_reason="converted", sent=[])


async def test_no_marketing_consent_means_no_mail(shop: Shop) -> None:
    await shop.identify("c-1", email="c-1@example.com", marketing_consent=False)
    await shop.track("c-1", "Product Added", **TEE)
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert await result(shop) == JourneyResult(exit_reason="no_consent", sent=[])


async def test_new_cart_after_a_purchase_starts_a_new_journey(shop: Shop) -> None:
    await abandon(shop)
    await shop.sleep(minutes=5)
    await shop.track("c-1", "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await shop.sleep(minutes=5)
    await shop.track("c-1", "Product Added", **{**TOTE, "cart_id": "cart-2"})
    await shop.sleep(minutes=31)

    (reminder,) = shop.outbox_mail()
    assert "Canvas tote" in reminder.text and "T-shirt" not in reminder.text


async def test_status_query_shows_the_next_send(shop: Shop) -> None:
    start = await shop.now()
    await abandon(shop)
    handle = shop.handle(abandoned_cart_id("c-1"))
    status = await handle.query("status")
    assert status["next_step"] == "reminder" and status["state"] == "waiting"
    await shop.sleep(minutes=31)
    desc = await handle.describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    status = await handle.query("status")
    assert status["sent"] == ["reminder"] and status["next_step"] == "incentive"
    assert status["customer_id"] == "c-1"
    assert start  # the next send is the reminder's time + 24 h
    await shop.sleep(days=2)


async def test_fresh_history_replays(shop: Shop) -> None:
    await abandon(shop)
    await shop.sleep(hours=1)
    await shop.track("c-1", "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await result(shop)
    history = await shop.handle(abandoned_cart_id("c-1")).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
