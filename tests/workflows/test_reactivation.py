"""Reactivation ("still with us?"), as a lapsed customer experiences it, on the time-skipping
server: a personal code at their segment's level, or one question answered by a click."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.guardrails.conftest import shop_api
from tests.harness import Shop
from tests.workflows.lapsed import TEE, enter, lapsed_customer, sent
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.links import DEV_SECRET, UnsubscribeLinks
from triggermail.store import Coupon, SurveyAnswer
from triggermail.web.customer_card import load_card
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
CLOSE = timedelta(seconds=2)
ANSWERS = ["price", "quality", "delivery", "checkout", "other"]
SURVEY_LINK = re.compile(r"http://localhost:8000(/survey/[^/\s]+/[a-z]+)\?\S+")


def journeys(*, ask: str = "promo", after: timedelta = timedelta(0)) -> JourneysConfig:
    """The default journeys with the reactivation asking ``ask``, ``after`` its entry."""
    config = load_journeys()
    assert config.reactivation is not None
    step = config.reactivation.steps[0].model_copy(update={"after": after})
    reactivation = config.reactivation.model_copy(update={"ask": ask, "steps": [step]})
    return config.model_copy(update={"reactivation": reactivation})


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=("reactivation",)) as shop:
        yield shop


@pytest.fixture
async def survey_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[Shop]:
    async with Shop(
        env, sqlite_url, tmp_path, enabled=("reactivation",), journeys=journeys(ask="survey")
    ) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer per test: the time-skipping server is shared."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def result(shop: Shop, workflow_id: str) -> JourneyResult:
    return await shop.handle(workflow_id).result()


@pytest.mark.parametrize(
    ("segment", "percent", "free_shipping", "vip_line"),
    [("vip", 20, True, True), ("repeat", 15, False, False), ("one_time", 10, False, False)],
)
async def test_still_with_us_with_a_personal_code_at_the_segments_level(
    shop: Shop, c: str, segment: str, percent: int, free_shipping: bool, vip_line: bool
) -> None:
    await lapsed_customer(shop, c)
    start = await shop.now()
    workflow_id = await enter(shop, "reactivation", c, segment=segment)
    await shop.sleep(days=1)

    (mail,) = shop.outbox_mail()
    assert (mail.to, mail.step, mail.subject) == (
        f"Ana <{c}@example.com>",
        "still_with_us",
        "Ana, are you still with us?",
    )
    assert mail.at - start == pytest.approx(timedelta(0), abs=CLOSE)
    with shop.sessions() as session:
        (coupon,) = session.scalars(select(Coupon).where(Coupon.customer_id == c))
    assert coupon.percent == percent
    assert coupon.expires_at - coupon.created_at == timedelta(days=14)
    assert sent(shop, "reactivation", "still_with_us").coupon_code == coupon.code
    assert f"Here is {percent}% off your next order." in mail.text
    assert f"    {coupon.code}\n" in mail.text
    assert ("Shipping on your next order is on us." in mail.text) is free_shipping
    assert ("You are one of our best customers" in mail.text) is vip_line
    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason="completed", sent=["still_with_us"]
    )

    if segment == "repeat" and os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        history = await shop.handle(workflow_id).fetch_history()
        (HISTORIES / "reactivation-promo-2026-11.json").write_text(history.to_json())


async def test_an_order_before_the_e_mail_ends_it(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    later = journeys(after=timedelta(days=2))
    async with Shop(env, sqlite_url, tmp_path, enabled=("reactivation",), journeys=later) as shop:
        await lapsed_customer(shop, c)
        workflow_id = await enter(shop, "reactivation", c)
        await shop.sleep(days=1)
        await shop.track(c, "Order Completed", order_id=f"{c}-o-1", total=24.9, products=[TEE])
        assert await result(shop, workflow_id) == JourneyResult(exit_reason="purchase", sent=[])
        await shop.sleep(days=3)
        assert shop.outbox_mail() == []


async def test_a_lost_purchase_signal_still_stops_the_e_mail(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    later = journeys(after=timedelta(days=2))
    async with Shop(env, sqlite_url, tmp_path, enabled=("reactivation",), journeys=later) as shop:
        await lapsed_customer(shop, c)
        workflow_id = await enter(shop, "reactivation", c, record=False)
        await shop.sleep(days=1)
        await shop.track(c, "Order Completed", order_id=f"{c}-o-1", total=24.9, products=[TEE])
        await shop.sleep(days=2)
        assert shop.outbox_mail() == []
        assert await result(shop, workflow_id) == JourneyResult(exit_reason="converted", sent=[])


async def test_survey_answer_is_recorded_on_the_card_and_a_later_click_changes_it(
    survey_shop: Shop, c: str
) -> None:
    shop = survey_shop
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "reactivation", c, segment="vip")
    await shop.sleep(hours=1)

    (mail,) = shop.outbox_mail()
    assert mail.subject == "Ana, may we ask you one thing?"
    assert "What kept you away?" in mail.text
    assert "Delivery: too slow or too expensive: http://localhost:8000/survey/" in mail.text
    links = dict(zip(ANSWERS, (m.group(1) for m in SURVEY_LINK.finditer(mail.text)), strict=True))
    row = sent(shop, "reactivation", "still_with_us")
    assert row.coupon_code is None  # a question, not an offer: no code, whatever the segment
    assert await result(shop, workflow_id) == JourneyResult(
        exit_reason="completed", sent=["still_with_us"]
    )

    async with shop_api(shop) as http:
        page = await http.get(links["delivery"])
        assert page.status_code == 200
        assert "Thank you" in page.text and "delivery" in page.text
        card = await load_card(c, session_factory=shop.sessions, client=None)
        assert card is not None
        assert [(a.answer, a.send_id) for a in card.survey] == [("delivery", row.id)]

        await shop.sleep(hours=2)
        await shop.tick()
        assert (await http.get(links["price"])).status_code == 200
        card = await load_card(c, session_factory=shop.sessions, client=None)
        assert card is not None
        assert [a.answer for a in card.survey] == ["price"]  # one answer per e-mail: the latest

        # Forged, altered, or an unsubscribe token: nothing recorded.
        send_id = links["price"].split("/")[2].split(".")[0]
        unsubscribe = UnsubscribeLinks(secret=DEV_SECRET, public_url="http://x").token(send_id)
        for path in (
            f"/survey/{unsubscribe}/quality",
            links["price"].replace("/price", "/quality").replace(send_id[:4], "0000"),
            f"/survey/{send_id}.bm9wZQ/quality",
        ):
            assert (await http.get(path)).status_code == 400
        assert (await http.get(links["price"].replace("/price", "/free"))).status_code == 400
    with shop.sessions() as session:
        answers = [(a.answer, a.send_id) for a in session.scalars(select(SurveyAnswer))]
    assert answers == [("price", row.id)]


def test_survey_links_name_the_e_mail_and_are_signed_for_surveys_only() -> None:
    links = UnsubscribeLinks(secret=b"k" * 32, public_url="https://api.shop.example/")
    send_id = "0" * 32
    url = links.survey_url(send_id, "price")
    path = urlsplit(url).path
    assert url.startswith("https://api.shop.example/survey/")
    token = path.split("/")[2]
    assert links.verify_survey(token) == send_id
    assert links.verify(token) is None  # never an unsubscribe
    assert links.verify_survey(links.token(send_id)) is None


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await lapsed_customer(shop, c)
    workflow_id = await enter(shop, "reactivation", c)
    await result(shop, workflow_id)
    history = await shop.handle(workflow_id).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
