"""Win-back, as a lapsed customer experiences it, on the time-skipping server: offers, what
sets the shop apart, a farewell, and a sunset for whoever never reacts."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.guardrails.conftest import shop_api
from tests.harness import Shop
from tests.workflows.lapsed import (
    TEE,
    enter,
    lapsed_customer,
    sendgrid_reports,
    sent,
    suppressions,
)
from triggermail.ids import win_back_id
from triggermail.store import Coupon, Suppression
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.sweep import SweepInput, SweepWorkflow
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
STEPS = ["free_shipping", "discount", "last_offer", "value", "farewell"]
DUE = {  # after entry, with the default [win_back] timings
    "free_shipping": timedelta(0),
    "discount": timedelta(days=7),
    "last_offer": timedelta(days=14),
    "value": timedelta(days=21),
    "farewell": timedelta(days=35),
}
SUNSET = timedelta(days=42)
"""Seven days' grace (``sunset_after``) after the farewell."""
CLOSE = timedelta(seconds=2)


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=("win_back", "abandoned_cart")) as shop:
        yield shop


@pytest.fixture
async def http(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with shop_api(shop) as client:
        yield client


@pytest.fixture
def c() -> str:
    """A new customer per test: the time-skipping server is shared."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def result(shop: Shop, workflow_id: str) -> JourneyResult:
    return await shop.handle(workflow_id).result()


async def test_a_silent_customer_gets_five_weeks_of_win_back_then_is_sunset(
    shop: Shop, c: str
) -> None:
    await lapsed_customer(shop, c)
    start = await shop.now()
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=43)

    mail = shop.outbox_mail()
    assert [(m.to, m.step) for m in mail] == [(f"Ana <{c}@example.com>", s) for s in STEPS]
    for m in mail:
        assert m.at - start == pytest.approx(DUE[m.step], abs=CLOSE), m.step
    first, discount, last, value, farewell = mail
    assert first.subject == "Free shipping on your next order"
    assert "Shipping on your next order is on us." in first.text
    assert discount.subject == "25% off your next order, just for you"
    assert "on us" not in discount.text
    assert last.subject == "25% off and free shipping, just for you"
    assert value.subject == "What makes Your Shop different"
    assert "✓ Free returns for 30 days, no questions asked" in value.text
    assert farewell.subject == "Ana, is this goodbye?"
    assert "Keep me on the list: https://shop.example/?" in farewell.text
    assert "Unsubscribe: http://localhost:8000/unsubscribe/" in farewell.text

    # Each code is the customer's own, and runs out.
    with shop.sessions() as session:
        coupons = list(session.scalars(select(Coupon).where(Coupon.customer_id == c)))
    assert sorted((cp.percent, cp.expires_at - cp.created_at) for cp in coupons) == [
        (25, timedelta(days=7)),
        (25, timedelta(days=14)),
    ]
    assert len({cp.code for cp in coupons}) == 2

    farewell_row = sent(shop, "win_back", "farewell")
    assert suppressions(shop, c) == [("sunset", "win_back", farewell_row.id)]
    assert await result(shop, workflow_id) == JourneyResult(exit_reason="sunset", sent=STEPS)
    history = await shop.handle(workflow_id).fetch_history()
    (sunset_event,) = [
        e
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "sunset"
    ]
    assert sunset_event.event_time.ToDatetime().replace(tzinfo=start.tzinfo) - start == (
        pytest.approx(SUNSET, abs=CLOSE)
    )

    # No marketing journey mails a sunset customer again.
    await shop.track(c, "Product Added", **TEE, cart_id=f"{c}-cart")
    await shop.sleep(days=2)
    assert [m.step for m in shop.outbox_mail()] == STEPS
    cart_mail = [r for r in shop.ledger() if r.journey == "abandoned_cart"]
    assert [(r.status, r.reason) for r in cart_mail] == [("skipped", "sunset")]

    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        (HISTORIES / "win_back-sunset-2026-11.json").write_text(history.to_json())


@pytest.mark.parametrize("event", ["click", "open"])
async def test_a_click_or_an_open_keeps_the_customer_after_the_farewell(
    shop: Shop, http: httpx.AsyncClient, c: str, event: str
) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=22)
    await sendgrid_reports(shop, http, event, sent(shop, "win_back", "value"))
    await shop.sleep(days=21)

    assert [m.step for m in shop.outbox_mail()] == STEPS
    assert suppressions(shop, c) == []
    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason=f"reacted_{event}", sent=STEPS
    )


async def test_a_click_on_the_farewell_in_the_grace_period_keeps_the_customer(
    shop: Shop, http: httpx.AsyncClient, c: str
) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=41)
    await sendgrid_reports(shop, http, "click", sent(shop, "win_back", "farewell"))
    await shop.sleep(days=2)

    assert suppressions(shop, c) == []
    assert (await result(shop, workflow_id)).exit_reason == "reacted_click"


@pytest.mark.parametrize(
    ("ordered_after", "got"),
    [
        (timedelta(days=1), ["free_shipping"]),  # offer phase
        (timedelta(days=15), ["free_shipping", "discount", "last_offer"]),  # offer phase
        (timedelta(days=22), STEPS[:4]),  # value phase
        (timedelta(days=38), STEPS),  # farewell's grace
    ],
    ids=["offer", "last-offer", "value", "farewell"],
)
async def test_an_order_in_any_phase_ends_it_with_no_sunset(
    shop: Shop, c: str, ordered_after: timedelta, got: list[str]
) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(seconds=ordered_after.total_seconds())
    await shop.track(c, "Order Completed", order_id=f"{c}-o-1", total=24.9, products=[TEE])
    # The signal ends it at once, not at its next e-mail.
    assert await result(shop, workflow_id) == JourneyResult(exit_reason="purchase", sent=got)
    await shop.sleep(days=45)

    assert [m.step for m in shop.outbox_mail()] == got
    assert suppressions(shop, c) == []


async def test_a_lost_purchase_signal_still_stops_the_next_e_mail(shop: Shop, c: str) -> None:
    await lapsed_customer(shop, c)
    # Not recorded as the sweep records it: the order cannot find the journey to signal.
    workflow_id = await enter(shop, "win_back", c, record=False)
    await shop.sleep(days=2)
    await shop.track(c, "Order Completed", order_id=f"{c}-o-1", total=24.9, products=[TEE])
    await shop.sleep(days=6)

    assert [m.step for m in shop.outbox_mail()] == ["free_shipping"]
    assert (
        sent(shop, "win_back", "discount").status,
        sent(shop, "win_back", "discount").reason,
    ) == (
        "skipped",
        "converted",
    )
    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason="converted", sent=["free_shipping"]
    )
    assert suppressions(shop, c) == []


async def test_unsubscribing_ends_it_and_is_no_sunset(shop: Shop, c: str) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=8)
    await end_journeys(shop.env.client, c, await shop.now(), sessions=shop.sessions)

    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason="unsubscribed", sent=["free_shipping", "discount"]
    )
    await shop.sleep(days=40)
    assert [m.step for m in shop.outbox_mail()] == ["free_shipping", "discount"]


@pytest.mark.parametrize(
    ("segment", "subjects", "percents", "vip_line"),
    [
        (
            "vip",
            [
                "Free shipping on your next order",
                "30% off and free shipping, just for you",
                "30% off and free shipping, just for you",
            ],
            [30, 30],
            True,
        ),
        (
            "repeat",
            [
                "Free shipping on your next order",
                "25% off your next order, just for you",
                "25% off and free shipping, just for you",
            ],
            [25, 25],
            False,
        ),
        (
            "one_time",
            [
                "Free shipping on your next order",
                "15% off your next order, just for you",
                "15% off and free shipping, just for you",
            ],
            [15, 15],
            False,
        ),
    ],
)
async def test_each_segment_gets_its_offer_level(
    shop: Shop, c: str, segment: str, subjects: list[str], percents: list[int], vip_line: bool
) -> None:
    await lapsed_customer(shop, c, name=None)
    workflow_id = await enter(shop, "win_back", c, segment=segment)
    await shop.sleep(days=15)

    offers = shop.outbox_mail()
    assert [m.subject for m in offers] == subjects
    with shop.sessions() as session:
        coupons = list(
            session.scalars(
                select(Coupon).where(Coupon.customer_id == c).order_by(Coupon.created_at)
            )
        )
    assert [cp.percent for cp in coupons] == percents
    assert [row.coupon_code for row in shop.ledger()] == [None, *(cp.code for cp in coupons)]
    for mail in offers:
        assert mail.text.startswith("We miss you\n")  # no name known: the nameless variant
        assert ("You are one of our best customers" in mail.text) is vip_line
    status = await shop.handle(workflow_id).query("status")
    assert status["next_step"] == "value"
    assert status["waiting_for"] == "a purchase or an unsubscribe"


async def test_status_shows_the_sunset_waiting_for_a_reaction(shop: Shop, c: str) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    start = await shop.now()
    await shop.sleep(days=36)
    status = await shop.handle(workflow_id).query("status")
    assert status["sent"] == STEPS
    assert status["next_step"] == "sunset"
    assert status["waiting_for"] == "an open, a click or an order"
    await end_journeys(shop.env.client, c, start + timedelta(days=36), sessions=shop.sessions)
    assert (await result(shop, workflow_id)).exit_reason == "unsubscribed"


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=43)
    await result(shop, workflow_id)
    history = await shop.handle(workflow_id).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


async def test_a_customer_suppressed_in_the_grace_period_is_not_sunset_too(
    shop: Shop, c: str
) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "win_back", c)
    await shop.sleep(days=38)
    # A complaint recorded without the journey hearing of it (SendGrid reports it late).
    with shop.sessions() as session:
        session.add(Suppression(customer_id=c, reason="spamreport", source="sendgrid"))
        session.commit()
    await shop.sleep(days=5)

    assert suppressions(shop, c) == [("spamreport", "sendgrid", None)]
    assert await result(shop, workflow_id) == JourneyResult(exit_reason="spamreport", sent=STEPS)


async def test_the_daily_sweep_starts_it_with_the_segment_and_an_order_ends_it(
    shop: Shop, c: str
) -> None:
    today = (await shop.tick()).date()
    placed = datetime.combine(today - timedelta(days=180), time(10), tzinfo=UTC)
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.send(
        {
            "type": "track",
            "userId": c,
            "event": "Order Completed",
            "properties": {"order_id": f"{c}-o-0", "total": 24.9, "products": [TEE]},
            "timestamp": placed.isoformat(),
        }
    )
    with shop.env.auto_time_skipping_disabled():
        swept = await shop.env.client.execute_workflow(
            SweepWorkflow.run,
            SweepInput(day=today.isoformat()),
            id=f"sweep/{today}/{uuid.uuid4()}",
            task_queue=shop.task_queue,
        )
    assert swept.counts["win_back"].started == 1
    workflow_id = win_back_id(c, placed.date().isoformat())
    shop.touched.add(workflow_id)
    await shop.sleep(days=8)

    # One order, long ago: a one-time buyer gets the one-time offer.
    assert [m.subject for m in shop.outbox_mail()] == [
        "Free shipping on your next order",
        "15% off your next order, just for you",
    ]
    await shop.track(c, "Order Completed", order_id=f"{c}-o-1", total=24.9, products=[TEE])
    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason="purchase", sent=["free_shipping", "discount"]
    )
