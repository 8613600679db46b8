"""A running journey keeps what it entered with: a deploy that changes the journeys TOML
under a sleeping journey changes the journeys that enter after it, never that one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from tests.workflows.lapsed import enter, lapsed_customer
from triggermail.journey_tables import Offer, ReviewRequest
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Coupon
from workflows.types import JourneyResult

BEFORE_POINTS = ["Free returns for 30 days, no questions asked"]
AFTER_POINTS = ["Something the shop says only after the deploy"]


def win_back(points: list[str], grace: timedelta, vip: Offer) -> JourneysConfig:
    """The packaged journeys with these win-back value points, grace and VIP offer."""
    config = load_journeys()
    assert config.win_back is not None
    table = config.win_back.model_copy(
        update={"value_points": points, "sunset_after": grace, "segments": {"vip": vip}}
    )
    return config.model_copy(update={"win_back": table})


def before() -> JourneysConfig:
    return win_back(BEFORE_POINTS, timedelta(days=7), Offer(coupon_percent=30, free_shipping=True))


def after() -> JourneysConfig:
    return win_back(AFTER_POINTS, timedelta(days=1), Offer(coupon_percent=50, free_shipping=False))


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(
        env, sqlite_url, tmp_path, enabled=("win_back",), journeys=before(), workflow_cache=0
    ) as shop:
        yield shop


async def test_a_win_back_keeps_its_offers_value_points_and_grace_through_a_deploy(
    shop: Shop,
) -> None:
    c = f"c-{uuid.uuid4().hex[:8]}"
    await lapsed_customer(shop, c)
    start = await shop.now()
    workflow_id = await enter(shop, "win_back", c, segment="vip")
    await shop.sleep(hours=1)  # the first offer has gone: the journey sleeps a week

    await shop.redeploy(after())
    await shop.sleep(days=36)  # past the farewell (5 weeks), within the old grace (7 d)

    mail = {m.step: m for m in shop.outbox_mail()}
    assert list(mail) == ["free_shipping", "discount", "last_offer", "value", "farewell"]
    assert "Shipping on your next order is on us." in mail["discount"].text  # vip: free
    assert BEFORE_POINTS[0] in mail["value"].text
    assert AFTER_POINTS[0] not in mail["value"].text
    with shop.sessions() as session:
        percents = sorted(cp.percent for cp in session.scalars(select(Coupon)))
    assert percents == [30, 30]  # the vip offer it entered with, not the deploy's 50
    # The deploy's 1-day grace would have sunset the customer by now; the 7 days it
    # entered with have not run out.
    described = await shop.handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING

    await shop.sleep(days=7)
    assert await shop.handle(workflow_id).result() == JourneyResult(
        exit_reason="sunset", sent=list(mail)
    )
    assert (await shop.now()) - start > timedelta(days=42)


async def test_a_review_request_keeps_the_bonus_it_entered_with(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    config = load_journeys()
    assert config.review_request is not None
    old = config.model_copy(
        update={
            "review_request": config.review_request.model_copy(
                update={"enabled": True, "bonus": "100 loyalty points"}
            )
        }
    )
    new_table = old.review_request
    assert isinstance(new_table, ReviewRequest)
    new = old.model_copy(
        update={"review_request": new_table.model_copy(update={"bonus": "a free tote bag"})}
    )
    c = f"c-{uuid.uuid4().hex[:8]}"
    async with Shop(
        env, sqlite_url, tmp_path, enabled=("review_request",), journeys=old, workflow_cache=0
    ) as shop:
        await shop.identify(c, email=f"{c}@example.com", firstName="Ana")
        order = {"order_id": f"o-{c}", "total": 20, "products": [{"product_id": "tee"}]}
        await shop.track(c, "Order Completed", **order)
        await shop.track(c, "Order Delivered", order_id=f"o-{c}")
        await shop.sleep(hours=1)
        await shop.redeploy(new)
        await shop.sleep(days=4)

        (ask,) = [m for m in shop.outbox_mail() if m.step == "ask"]
    assert "100 loyalty points" in ask.text
    assert "free tote bag" not in ask.text
