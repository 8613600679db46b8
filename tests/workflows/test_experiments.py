"""A/B variants and holdouts, as customers experience them, on the time-skipping server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.harness import Shop
from tests.workflows.test_abandoned_cart import TEE, abandon
from triggermail.ids import abandoned_cart_id
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Experiment
from triggermail.variants import assign_variant, in_holdout
from workflows.types import JourneyResult

REMINDER = "abandoned_cart.reminder"


def with_experiment(*, holdout: float = 0, auto_winner: bool = False) -> JourneysConfig:
    """The default journeys with a reminder that tries a later, differently worded e-mail."""
    journeys = load_journeys()
    cart = journeys.abandoned_cart
    data: dict[str, Any] = cart.model_dump()
    data["holdout"] = holdout
    data["steps"][0]["variants"] = [
        {"name": "later", "after": "1h", "subject": "{{ customer.first_name }}, still deciding?"}
    ]
    if auto_winner:
        data["steps"][0]["auto_winner"] = {"min_recipients": 10, "probability": 0.9}
    return journeys.model_copy(update={"abandoned_cart": type(cart).model_validate(data)})


def customer_where(test: Callable[[str], bool]) -> str:
    return next(f"c-{i}" for i in range(1000) if test(f"c-{i}"))


def variant_of(customer: str) -> str:
    return assign_variant(REMINDER, customer, [("control", 1), ("later", 1)])


@pytest.fixture
async def holdout_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, journeys=with_experiment(holdout=0.5)) as shop:
        yield shop


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, journeys=with_experiment(auto_winner=True)) as shop:
        yield shop


async def test_a_holdout_customer_is_recorded_when_the_reminder_would_go_and_never_mailed(
    holdout_shop: Shop,
) -> None:
    shop = holdout_shop
    held = customer_where(lambda c: in_holdout("abandoned_cart", c, 0.5))
    mailed = customer_where(lambda c: not in_holdout("abandoned_cart", c, 0.5))
    start = await shop.now()
    await abandon(shop, held)
    await abandon(shop, mailed)
    await shop.sleep(days=7)

    assert {m.to for m in shop.outbox_mail()} == {f"Ana <{mailed}@example.com>"}
    (row,) = [r for r in shop.ledger() if r.customer_id == held]
    assert (row.step, row.status, row.reason, row.variant) == (
        "reminder",
        "skipped",
        "holdout",
        "holdout",
    )
    assert row.due_at is not None
    assert row.due_at.replace(tzinfo=UTC) - start == pytest.approx(
        timedelta(minutes=30), abs=timedelta(seconds=5)
    )
    result = await shop.handle(abandoned_cart_id(held)).result()
    assert result == JourneyResult(exit_reason="holdout", sent=[])


async def test_a_holdout_customer_who_buys_first_leaves_no_row(holdout_shop: Shop) -> None:
    shop = holdout_shop
    held = customer_where(lambda c: in_holdout("abandoned_cart", c, 0.5))
    await abandon(shop, held)
    await shop.sleep(minutes=10)
    await shop.track(held, "Order Completed", order_id="o-1", total=24.9, products=[TEE])
    await shop.sleep(days=2)

    assert shop.ledger() == []
    result = await shop.handle(abandoned_cart_id(held)).result()
    assert result.exit_reason == "purchase"


async def test_each_customer_gets_their_variant_its_timing_and_its_subject(shop: Shop) -> None:
    control = customer_where(lambda c: variant_of(c) == "control")
    later = customer_where(lambda c: variant_of(c) == "later")
    start = await shop.now()
    await abandon(shop, control)
    await abandon(shop, later)
    await shop.sleep(days=3)

    mail = {(m.to.split("<")[1].split("@")[0], m.step): m for m in shop.outbox_mail()}
    assert sorted(mail) == sorted(
        [(control, "reminder"), (control, "incentive"), (later, "reminder"), (later, "incentive")]
    )
    first, second = mail[(control, "reminder")], mail[(later, "reminder")]
    assert first.subject == "Ana, you left something in your cart"
    assert second.subject == "Ana, still deciding?"
    assert first.at - start == pytest.approx(timedelta(minutes=30), abs=timedelta(seconds=5))
    assert second.at - start == pytest.approx(timedelta(hours=1), abs=timedelta(seconds=5))
    # The incentive counts from its own step's due time, which the variant moved.
    assert mail[(later, "incentive")].at - second.at == pytest.approx(
        timedelta(hours=24), abs=timedelta(seconds=5)
    )
    variants = {(r.customer_id, r.step): r.variant for r in shop.ledger()}
    assert variants == {
        (control, "reminder"): "control",
        (control, "incentive"): "control",
        (later, "reminder"): "later",
        (later, "incentive"): "control",
    }


async def test_a_decided_winner_is_what_new_entries_get(shop: Shop) -> None:
    control = customer_where(lambda c: variant_of(c) == "control")
    with shop.sessions() as session:
        session.add(
            Experiment(
                name=REMINDER,
                journey="abandoned_cart",
                step="reminder",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
                winner="later",
                probability=0.97,
                decided_at=datetime(2026, 2, 1, tzinfo=UTC),
            )
        )
        session.commit()
    await abandon(shop, control)
    await shop.sleep(hours=2)

    (reminder,) = shop.outbox_mail()
    assert reminder.subject == "Ana, still deciding?"
    assert [r.variant for r in shop.ledger()] == ["later"]
