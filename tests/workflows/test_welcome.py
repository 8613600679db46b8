"""Welcome, as a new customer experiences it, on the time-skipping server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.harness import Shop
from triggermail.ids import welcome_id
from triggermail.ops.operators import cancel_journey
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, welcome=True) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer id per test: the server is shared, and a welcome ID is used once ever."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def result(shop: Shop, customer: str) -> JourneyResult:
    return await shop.handle(welcome_id(customer)).result()


async def test_consent_gets_welcome_at_once_then_follow_ups_a_day_and_three_days_later(
    shop: Shop, c: str
) -> None:
    start = await shop.now()
    entered = await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    assert welcome_id(c) in entered.started
    await shop.sleep(days=7)

    mail = shop.outbox_mail()
    assert [(m.to, m.step) for m in mail] == [
        (f"Ana <{c}@example.com>", "welcome"),
        (f"Ana <{c}@example.com>", "discover"),
        (f"Ana <{c}@example.com>", "account"),
    ]
    welcome, discover, account = mail
    assert welcome.subject == "Welcome to Your Shop, Ana"
    assert "Start shopping" in welcome.text and "help@shop.example" in welcome.text
    assert discover.subject == "Ana, where to start at Your Shop"
    assert "https://shop.example/bestsellers?" in discover.text
    assert account.subject == "Your Your Shop account, in one minute"
    assert "https://shop.example/account/emails?" in account.text
    assert welcome.at - start == pytest.approx(timedelta(0), abs=timedelta(seconds=2))
    assert discover.at - start == pytest.approx(timedelta(days=1), abs=timedelta(seconds=2))
    assert account.at - start == pytest.approx(timedelta(days=3), abs=timedelta(seconds=2))
    assert await result(shop, c) == JourneyResult(
        exit_reason="completed", sent=["welcome", "discover", "account"]
    )

    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        history = await shop.handle(welcome_id(c)).fetch_history()
        (HISTORIES / "welcome-completed-2026-11.json").write_text(history.to_json())


async def test_signed_up_enters_once_the_customer_can_be_mailed(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.track(c, "Signed Up", type="email")
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["welcome", "discover", "account"]


async def test_re_identifying_or_signing_up_again_never_welcomes_twice(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(hours=2)
    await shop.identify(c, firstName="Ana")  # while the welcome runs
    await shop.sleep(days=7)
    await shop.identify(c, email="ana@example.com")  # long after it ended
    await shop.track(c, "Signed Up")
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["welcome", "discover", "account"]
    assert await result(shop, c) == JourneyResult(
        exit_reason="completed", sent=["welcome", "discover", "account"]
    )


async def test_no_consent_no_welcome_until_consent_is_given(shop: Shop, c: str) -> None:
    start = await shop.now()
    refused = await shop.identify(c, email=f"{c}@example.com", marketing_consent=False)
    signed_up = await shop.track(c, "Signed Up")
    assert refused.started == [] and signed_up.started == []
    await shop.sleep(days=2)
    assert shop.outbox_mail() == []

    await shop.identify(c, marketing_consent=True)
    await shop.sleep(days=4)
    assert [m.step for m in shop.outbox_mail()] == ["welcome", "discover", "account"]
    assert shop.outbox_mail()[0].at - start == pytest.approx(
        timedelta(days=2), abs=timedelta(seconds=2)
    )


async def test_a_customer_we_could_mail_before_the_welcome_was_on_is_not_welcomed(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    async with Shop(env, sqlite_url, tmp_path / "before") as before:
        await before.identify(c, email=f"{c}@example.com", firstName="Ana")
        await before.sleep(days=30)
    async with Shop(env, sqlite_url, tmp_path / "after", welcome=True) as shop:
        # Switched on a month later: their next login is no sign-up.
        assert (await shop.identify(c, firstName="Ana")).started == []
        late = f"{c}-new"
        assert (await shop.identify(late, email=f"{late}@example.com")).started == [
            welcome_id(late)
        ]
        await shop.sleep(days=4)

        assert [(m.to, m.step) for m in shop.outbox_mail()] == [
            (f"{late}@example.com", step) for step in ("welcome", "discover", "account")
        ]


async def test_a_welcome_in_the_ledger_is_never_sent_again_after_temporal_forgets_it(
    shop: Shop, c: str
) -> None:
    await shop.identify(c, email=f"{c}@example.com", marketing_consent=False)
    # What a welcome whose closed run has passed the namespace's retention leaves.
    shop.record_sent(c, journey="welcome", step="welcome", workflow_id=welcome_id(c))
    assert (await shop.identify(c, marketing_consent=True)).started == []
    assert (await shop.track(c, "Signed Up")).started == []
    await shop.sleep(days=4)

    assert shop.outbox_mail() == []


@pytest.mark.parametrize(
    ("after", "sent"),
    [(timedelta(hours=12), ["welcome"]), (timedelta(days=2), ["welcome", "discover"])],
    ids=["before-discover", "before-account"],
)
async def test_unsubscribe_ends_the_series(
    shop: Shop, c: str, after: timedelta, sent: list[str]
) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(seconds=after.total_seconds())
    await end_journeys(shop.env.client, c, await shop.now())
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == sent
    assert await result(shop, c) == JourneyResult(exit_reason="unsubscribed", sent=sent)


async def test_an_operator_cancel_ends_the_series(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(hours=12)
    await cancel_journey(shop.env.client, welcome_id(c), reason="asked by phone")
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["welcome"]
    assert await result(shop, c) == JourneyResult(exit_reason="cancelled", sent=["welcome"])


async def test_an_order_during_the_series_does_not_end_it(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(hours=2)
    await shop.track(c, "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == ["welcome", "discover", "account"]
    assert await result(shop, c) == JourneyResult(
        exit_reason="completed", sent=["welcome", "discover", "account"]
    )


async def test_status_query_shows_the_next_follow_up(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(hours=1)
    status = await shop.handle(welcome_id(c)).query("status")
    assert status["journey"] == "welcome" and status["sent"] == ["welcome"]
    assert status["next_step"] == "discover" and status["waiting_for"] == "an unsubscribe"
    await shop.sleep(days=4)


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
    await shop.sleep(days=2)
    await end_journeys(shop.env.client, c, await shop.now())
    await result(shop, c)
    history = await shop.handle(welcome_id(c)).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
