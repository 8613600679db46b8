"""Abandoned cart through SendGrid's HTTP API (a fake on loopback) when SendGrid misbehaves.

Whatever SendGrid answers, each step reaches the customer at most once, and every
outcome is in the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.fakes.sendgrid import ACCEPT, DROP, FakeSendGrid, error, rate_limited
from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from workflows.types import JourneyResult

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9, "cart_id": "k-1"}


@pytest.fixture
async def shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, sendgrid: FakeSendGrid
) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, sendgrid_url=sendgrid.url) as shop:
        yield shop


async def run_journey(shop: Shop) -> JourneyResult:
    await shop.identify("c-1", email="ana@example.com", firstName="Ana")
    await shop.track("c-1", "Product Added", **TEE)
    await shop.sleep(days=3)
    return await shop.handle(abandoned_cart_id("c-1")).result()


def statuses(shop: Shop) -> list[tuple[str, str, int]]:
    return [(row.step, row.status, row.attempts) for row in shop.ledger()]


async def test_every_email_goes_through_sendgrid_with_only_opaque_ids(
    shop: Shop, sendgrid: FakeSendGrid
) -> None:
    assert (await run_journey(shop)).sent == ["reminder", "incentive"]

    inbox = sendgrid.inbox()
    assert [(m["to"], m["subject"]) for m in inbox] == [
        ("ana@example.com", "Ana, you left something in your cart"),
        ("ana@example.com", inbox[1]["subject"]),
    ]
    assert "Organic cotton T-shirt: €24.90" in inbox[0]["text"]
    ledger = shop.ledger()
    assert [m["send_id"] for m in inbox] == [row.id for row in ledger]
    assert [row.provider_message_id for row in ledger] == ["sg-1", "sg-2"]
    custom_args = sendgrid.accepted[0].get("custom_args") or {}
    assert set(custom_args) == {"send_id"}  # no personal data travels as metadata


async def test_rate_limited_then_accepted_sends_once(shop: Shop, sendgrid: FakeSendGrid) -> None:
    sendgrid.script.extend([rate_limited(reset_in_s=2), ACCEPT])
    await run_journey(shop)

    assert [status for status, _ in sendgrid.requests] == [429, 202, 202]
    assert len(sendgrid.inbox()) == 2
    assert statuses(shop) == [("reminder", "sent", 2), ("incentive", "sent", 1)]


async def test_server_errors_are_retried_until_accepted_once(
    shop: Shop, sendgrid: FakeSendGrid
) -> None:
    sendgrid.script.extend([error(500), error(503), ACCEPT])
    await run_journey(shop)

    assert [status for status, _ in sendgrid.requests] == [500, 503, 202, 202]
    assert len(sendgrid.inbox()) == 2
    assert statuses(shop) == [("reminder", "sent", 3), ("incentive", "sent", 1)]


async def test_permanent_rejection_is_recorded_once_and_the_journey_goes_on(
    shop: Shop, sendgrid: FakeSendGrid
) -> None:
    sendgrid.script.append(error(400, "The to email does not contain a valid address."))
    result = await run_journey(shop)

    assert [status for status, _ in sendgrid.requests] == [400, 202]
    assert result == JourneyResult(exit_reason="completed", sent=["incentive"])
    reminder, incentive = shop.ledger()
    assert (reminder.status, reminder.attempts) == ("failed", 1)
    assert reminder.reason is not None and "valid address" in reminder.reason
    assert incentive.status == "sent"


async def test_connection_dropped_after_accept_is_never_sent_twice(
    shop: Shop, sendgrid: FakeSendGrid
) -> None:
    sendgrid.script.append(DROP)
    result = await run_journey(shop)

    # SendGrid took the reminder before the connection dropped: the customer has it once.
    assert len(sendgrid.requests) == 2
    reminder_mail, _ = sendgrid.inbox()
    assert reminder_mail["subject"] == "Ana, you left something in your cart"
    reminder, incentive = shop.ledger()
    assert (reminder.status, reminder.attempts) == ("unknown", 1)
    assert incentive.status == "sent"
    assert result.sent == ["reminder", "incentive"]
