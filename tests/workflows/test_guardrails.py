"""Frequency cap, priority and quiet hours, as the customer's inbox experiences them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.email import EmailActivities
from activities.rendering import Renderer
from tests.harness import GUARDRAILS_OFF, Shop
from tests.workflows.rival import RivalJourney
from triggermail.ids import abandoned_cart_id, email_task_queue
from triggermail.journeys import Guardrails, JourneysConfig, QuietHours, load_journeys
from triggermail.ops.operators import current_details
from worker import WORKFLOWS
from workflows.types import AbandonedCartInput, JourneyResult, JourneySpec, JourneyStatus, StepSpec

HISTORIES = Path(__file__).parent.parent / "histories"
TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9, "cart_id": "k-1"}
CAP = Guardrails(
    min_hours_between=16,
    max_per_week=4,
    quiet_hours=None,
    priority={"abandoned_cart": 1, "welcome": 5},
)
NIGHTS = GUARDRAILS_OFF.model_copy(update={"quiet_hours": QuietHours(time(21), time(9))})


def near(actual: datetime | None, expected: datetime) -> bool:
    return actual is not None and abs(actual - expected) < timedelta(minutes=2)


def incentive_after(tmp_path: Path, after: str) -> JourneysConfig:
    """The packaged journeys with the incentive ``after`` the reminder."""
    text = (Path(__file__).parents[2] / "triggermail" / "journeys.toml").read_text()
    path = tmp_path / "journeys.toml"
    path.write_text(text.replace('after = "24h"', f'after = "{after}"'))
    return load_journeys(path)


@pytest.fixture
async def capped(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    journeys = incentive_after(tmp_path, "2h")
    async with Shop(env, sqlite_url, tmp_path, journeys=journeys, guardrails=CAP) as shop:
        yield shop


@pytest.fixture
async def rival_worker(capped: Shop) -> AsyncIterator[str]:
    """A worker for the rival journey on its own task queue, with the shop's send activity."""
    email = EmailActivities(
        session_factory=capped.sessions,
        renderer=Renderer(shop_locale=capped.journeys.shop.locale),
        transport=capped.transport,
        journeys=capped.journeys,
        clock=capped.now_sync,
    )
    queue = f"{capped.task_queue}-rival"
    async with (
        Worker(
            capped.env.client,
            task_queue=queue,
            workflows=[RivalJourney],
            activities=[email.send_email],
            activity_executor=capped.executor,
        ),
        # Journeys schedule their sends on the send queue beside their own.
        Worker(
            capped.env.client,
            task_queue=email_task_queue(queue),
            activities=[email.send_email],
            activity_executor=capped.executor,
        ),
    ):
        yield queue


def sends(shop: Shop) -> list[tuple[str, str, datetime]]:
    """What went out, by journey and step, in the order the customer got it."""
    sent = [(r.journey, r.step, r.sent_at) for r in shop.ledger() if r.sent_at is not None]
    return sorted(sent, key=lambda s: s[2])


async def test_two_journeys_competing_for_the_cap_go_one_by_one_in_priority_order(
    capped: Shop, rival_worker: str
) -> None:
    start = await capped.now()
    await capped.identify("c-1", email="c-1@example.com", firstName="Ana")
    await capped.track("c-1", "Product Added", **TEE)
    await capped.sleep(hours=1)  # the cart reminder went at 30 min

    # A second journey of higher priority enters; its e-mail is due at 3 h, the cart's
    # incentive at 2 h 30: both fall inside the 16 h after the reminder.
    rival_id = "rival/c-1"
    capped.touched.add(rival_id)
    await capped.env.client.start_workflow(
        RivalJourney.run,
        AbandonedCartInput(
            customer_id="c-1",
            cart_id="k-1",
            entered_at=await capped.now(),
            entry_event_id="rival-entry",
            spec=JourneySpec(
                "welcome",
                [StepSpec("reminder", after_s=2 * 3600, template="abandoned_cart/reminder")],
            ),
        ),
        id=rival_id,
        task_queue=rival_worker,
    )
    await capped.sleep(hours=4)

    cart = capped.handle(abandoned_cart_id("c-1"))
    status = await cart.query("status", result_type=JourneyStatus)
    slot = start + timedelta(minutes=30, hours=16)
    assert (status.next_step, status.waiting_for) == ("incentive", "the frequency cap")
    assert near(status.next_send_at, slot)
    assert "waiting for the frequency cap; next e-mail **incentive**" in (
        await current_details(cart)
    )
    held = await capped.handle(rival_id).query("status", result_type=JourneyStatus)
    assert held.waiting_for == "the frequency cap" and near(held.next_send_at, slot)

    await capped.sleep(days=3)
    (cart_reminder, rival, incentive) = sends(capped)
    assert cart_reminder[:2] == ("abandoned_cart", "reminder")
    assert near(cart_reminder[2], start + timedelta(minutes=30))
    # At the shared slot the higher priority goes; the cart's incentive, though due
    # earlier, steps aside for another 16 h.
    assert rival[:2] == ("welcome", "reminder") and near(rival[2], slot)
    assert incentive[:2] == ("abandoned_cart", "incentive")
    assert near(incentive[2], slot + timedelta(hours=16))
    assert await cart.result() == JourneyResult(
        exit_reason="completed", sent=["reminder", "incentive"]
    )

    history = await cart.fetch_history()
    decode = capped.env.client.data_converter.payload_converter
    waits = [
        decode.from_payload(event.user_metadata.summary, str)
        for event in history.events
        if event.HasField("timer_started_event_attributes")
    ]
    assert "wait 14h for the frequency cap before incentive" in waits, waits
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        (HISTORIES / "abandoned_cart-frequency_cap-2026-11.json").write_text(history.to_json())


async def test_an_email_held_past_the_deferral_limit_is_skipped_and_recorded(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    strict = CAP.model_copy(update={"max_deferral": timedelta(hours=1)})
    journeys = incentive_after(tmp_path, "2h")
    async with Shop(env, sqlite_url, tmp_path, journeys=journeys, guardrails=strict) as shop:
        await shop.identify("c-1", email="c-1@example.com", firstName="Ana")
        await shop.track("c-1", "Product Added", **TEE)
        await shop.sleep(days=2)

        assert [m.step for m in shop.outbox_mail()] == ["reminder"]
        incentive = next(r for r in shop.ledger() if r.step == "incentive")
        assert (incentive.status, incentive.reason) == ("skipped", "capped")
        assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
            exit_reason="completed", sent=["reminder"]
        )


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
async def test_a_reminder_due_at_night_waits_for_nine_in_the_customers_timezone(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, zone: str
) -> None:
    tz = ZoneInfo(zone)
    async with Shop(env, sqlite_url, tmp_path, guardrails=NIGHTS) as shop:
        # Abandon the cart at 20:45 the customer's time: the reminder falls due at 21:15.
        local = (await shop.now()).astimezone(tz)
        evening = datetime.combine(local.date(), time(20, 45), tz)
        if evening <= local:
            evening += timedelta(days=1)
        await shop.env.sleep(evening - local)
        await shop.identify("c-1", email="c-1@example.com", firstName="Ana", timezone=zone)
        await shop.track("c-1", "Product Added", **TEE)
        await shop.sleep(hours=2)

        assert shop.outbox_mail() == []
        status = await shop.handle(abandoned_cart_id("c-1")).query(
            "status", result_type=JourneyStatus
        )
        assert status.waiting_for == "quiet hours to end"
        await shop.sleep(hours=12)

        (reminder,) = shop.outbox_mail()
        morning = datetime.combine(evening.date() + timedelta(days=1), time(9), tz)
        assert near(reminder.at, morning)
        assert reminder.at.astimezone(tz).hour == 9
