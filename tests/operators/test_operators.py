"""What operators see, on the Temporal dev server (search attributes need a real visibility store).

Real time passes here, so the journeys use second-scale timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.ops.cli import app
from triggermail.ops.operators import (
    cancel_journey,
    current_details,
    journey_timeline,
    list_journeys,
)
from triggermail.search_attributes import JOURNEY_STEP, NEXT_SEND_AT
from workflows.types import JourneyResult, JourneyStatus

T = TypeVar("T")
TEE = {"product_id": "tee", "name": "Tee", "price": 20, "cart_id": "k"}


@pytest.fixture
def fast_journeys(tmp_path: Path) -> JourneysConfig:
    text = (Path(__file__).parents[2] / "triggermail" / "journeys.toml").read_text()
    fast = text.replace('after = "30m"', 'after = "2s"').replace('after = "24h"', 'after = "2s"')
    path = tmp_path / "fast.toml"
    path.write_text(fast)
    return load_journeys(path)


@pytest.fixture
async def shop(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, fast_journeys: JourneysConfig
) -> AsyncIterator[Shop]:
    async with Shop(dev_env, sqlite_url, tmp_path, journeys=fast_journeys) as shop:
        yield shop


async def eventually(check: Callable[[], Awaitable[T]], *, within: float = 10.0) -> T:
    """Visibility is eventually consistent: poll until ``check`` stops raising."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def enter(shop: Shop, customer: str) -> None:
    await shop.identify(
        customer, email=f"{customer}@example.com", firstName="Ana", timezone="Asia/Tokyo"
    )
    await shop.track(customer, "Product Added", **{**TEE, "cart_id": f"k-{customer}"})


async def test_list_by_customer_finds_exactly_their_journeys(shop: Shop) -> None:
    await enter(shop, "ops-1")
    await enter(shop, "ops-2")

    async def listed() -> list[str]:
        rows = await list_journeys(shop.env.client, customer="ops-1")
        assert [r.workflow_id for r in rows] == [abandoned_cart_id("ops-1")]
        assert (rows[0].journey, rows[0].customer_id, rows[0].status) == (
            "abandoned_cart",
            "ops-1",
            "running",
        )
        return [r.workflow_id for r in rows]

    async def both_running() -> None:
        running = await list_journeys(shop.env.client, journey="abandoned_cart", running=True)
        assert {r.customer_id for r in running} >= {"ops-1", "ops-2"}

    await eventually(listed)
    await eventually(both_running)


async def test_details_status_and_search_attributes_follow_each_step(shop: Shop) -> None:
    await enter(shop, "ops-3")
    handle = shop.handle(abandoned_cart_id("ops-3"))

    async def waiting_for(step: str) -> JourneyStatus:
        status = await handle.query("status", result_type=JourneyStatus)
        assert status.next_step == step and status.state == "waiting"
        return status

    status = await eventually(lambda: waiting_for("reminder"))
    assert status.waiting_for == "a purchase"
    assert status.next_send_local is not None and "Asia/Tokyo" in status.next_send_local
    details = await current_details(handle)
    assert "next e-mail **reminder**" in details and "Asia/Tokyo" in details
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(JOURNEY_STEP) == "reminder"
    assert attributes.get(NEXT_SEND_AT) == status.next_send_at

    status = await eventually(lambda: waiting_for("incentive"))
    assert status.sent == ["reminder"] and [e.status for e in status.emails] == ["sent"]
    assert "reminder (sent" in await current_details(handle)

    result = await handle.result()
    assert result == JourneyResult(exit_reason="completed", sent=["reminder", "incentive"])
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(JOURNEY_STEP) == "ended"
    assert attributes.get(NEXT_SEND_AT) is None


async def test_cancel_ends_a_sleeping_journey_with_no_later_email(shop: Shop) -> None:
    await enter(shop, "ops-4")
    workflow_id = abandoned_cart_id("ops-4")
    await cancel_journey(shop.env.client, workflow_id, reason="customer asked support")

    result = await shop.handle(workflow_id).result()
    assert result == JourneyResult(exit_reason="cancelled", sent=[])
    await asyncio.sleep(3)  # past the reminder's time
    assert shop.outbox_mail() == []
    timeline = await journey_timeline(shop.env.client, workflow_id)
    texts = [entry.text for entry in timeline.entries]
    assert "exit requested: cancelled: customer asked support" in texts
    assert texts[-1] == "ended: cancelled; e-mails sent: none"


async def test_cli_tells_a_journeys_story(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    await enter(shop, "ops-5")
    await shop.handle(abandoned_cart_id("ops-5")).result()
    env = {
        "TEMPORAL_ADDRESS": shop.env.client.service_client.config.target_host,
        "TRIGGERMAIL_DATABASE_URL": shop.settings.database_url,
        "COLUMNS": "200",
    }
    runner = CliRunner()

    async def cli_list() -> str:
        out = await asyncio.to_thread(
            runner.invoke, app, ["journeys", "list", "--customer", "ops-5"], env=env
        )
        assert out.exit_code == 0, out.output
        assert "abandoned-cart/ops-5" in out.output and "completed" in out.output
        return out.output

    listing = await eventually(cli_list)
    assert "1 journey(s)" in listing

    shown = await asyncio.to_thread(
        runner.invoke, app, ["journeys", "show", abandoned_cart_id("ops-5")], env=env
    )
    assert shown.exit_code == 0, shown.output
    story = shown.output
    for expected in (
        "entered: customer ops-5; steps: reminder (+2s), incentive (+2s)",
        "wait 2s for a purchase before reminder",
        "send reminder: sent",
        "“Ana, you left something in your cart”",
        "ledger: sent",
        "send incentive: sent",
        "ended: completed; e-mails sent: reminder, incentive",
    ):
        assert expected in story, f"{expected!r} missing from:\n{story}"
    assert story.index("send reminder: sent") < story.index("send incentive: sent")
