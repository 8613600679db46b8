"""A cart abandoned, the reminder sent, clicked (SendGrid's signed webhook), an order: the
report credits the reminder — through the real intake, worker, webhook and store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.guardrails.conftest import shop_api
from tests.guardrails.test_sendgrid_webhook import TEE, signed
from tests.harness import Shop
from tests.report.builders import rows
from triggermail.analytics.report import build_report


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path) as shop:
        yield shop


@pytest.fixture
async def http(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    async with shop_api(shop) as client:
        yield client


async def test_an_order_after_a_click_on_the_reminder_is_credited_to_it(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    # The ledger's times are the journey's clock, not the database's: with the server's
    # clock a month past the wall clock, the report must still find this period's e-mails.
    await shop.sleep(days=30)
    entered = await shop.now()
    await shop.identify("c-1", email="ana@example.com", firstName="Ana")
    await shop.track("c-1", "Product Added", **TEE)
    await shop.sleep(minutes=31)
    (reminder,) = shop.ledger()
    assert (reminder.step, reminder.status) == ("reminder", "sent")

    await shop.sleep(hours=2)
    clicked = int((await shop.tick()).timestamp())
    body = json.dumps(
        [
            {
                "email": "ana@example.com",
                "timestamp": clicked,
                "event": "click",
                "sg_event_id": "click-1",
                "url": "https://shop.example/cart",
                "send_id": reminder.id,
            }
        ]
    ).encode()
    reply = await http.post("/webhooks/sendgrid", content=body, headers=signed(body, clicked))
    assert reply.json() == {"recorded": 1, "duplicates": 0, "ignored": 0}

    await shop.sleep(minutes=20)
    await shop.track(
        "c-1", "Order Completed", order_id="o-1", revenue=24.9, currency="EUR", cart_id="k-1"
    )
    await shop.sleep(days=2)  # the journey ends on the purchase: no incentive

    with shop.sessions() as session:
        report = build_report(
            session, shop.journeys, since=entered, until=await shop.now() + timedelta(minutes=1)
        )
    cart = rows(report, "abandoned_cart")
    reminder_row = cart[("reminder", "control")]
    assert (reminder_row.entered, reminder_row.sent, reminder_row.clicked) == (1, 1, 1)
    assert (reminder_row.converted, reminder_row.attributed_orders) == (1, 1)
    assert reminder_row.revenue == {"EUR": "24.90"}
    assert ("incentive", "control") not in cart
    journey = next(j for j in report.journeys if j.journey == "abandoned_cart")
    assert journey.recovery is not None
    assert (journey.recovery.carts_entered, journey.recovery.carts_recovered) == (1, 1)
    assert report.orders.attributed_revenue == {"EUR": "24.90"}
