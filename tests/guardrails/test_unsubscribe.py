"""One-click unsubscribe as the customer and their mail client use it."""

from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RetryConfig
from temporalio.testing import WorkflowEnvironment

from tests.api.conftest import serving
from tests.harness import GUARDRAILS_OFF, Shop
from triggermail.ids import abandoned_cart_id
from triggermail.links import DEV_SECRET, UnsubscribeLinks
from triggermail.store import Suppression
from triggermail.web.api import create_app
from triggermail.web.unsubscribe import follow_up
from workflows.types import JourneyResult

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9, "cart_id": "k-1"}


async def reminder_sent(shop: Shop, customer: str = "c-1") -> EmailMessage:
    """The customer abandons a cart and gets the reminder; returns it as their client sees it."""
    await shop.identify(customer, email=f"{customer}@example.com", firstName="Ana")
    await shop.track(customer, "Product Added", **{**TEE, "cart_id": f"k-{customer}"})
    await shop.sleep(minutes=31)
    (row,) = [r for r in shop.ledger() if r.customer_id == customer and r.status == "sent"]
    raw = (shop.outbox / f"{row.id}.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def link_of(message: EmailMessage) -> str:
    """The path of the List-Unsubscribe URL (the API is served in process)."""
    header = str(message["List-Unsubscribe"])
    assert header.startswith("<http://localhost:8000/unsubscribe/") and header.endswith(">")
    return urlsplit(header[1:-1]).path


def suppressions(shop: Shop) -> int:
    with shop.sessions() as session:
        return session.scalar(select(func.count()).select_from(Suppression)) or 0


async def test_every_marketing_email_carries_one_click_unsubscribe(shop: Shop) -> None:
    message = await reminder_sent(shop)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(message["List-Unsubscribe"])[1:-1]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and url in body.get_content()  # the visible footer link too
    assert "1 Example Street" in body.get_content()  # and the shop's postal address
    assert "c-1@example.com" not in url


async def test_one_click_unsubscribe_while_the_journey_sleeps_ends_it(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    path = link_of(await reminder_sent(shop))
    await shop.tick()
    # What Gmail or Apple Mail sends for RFC 8058 one-click.
    reply = await http.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 200 and "unsubscribed" in reply.text
    assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
        exit_reason="unsubscribed", sent=["reminder"]
    )
    await shop.sleep(days=3)
    assert [m.step for m in shop.outbox_mail()] == ["reminder"]  # no incentive
    assert (await http.post(path)).status_code == 200  # twice is harmless
    assert suppressions(shop) == 1


async def test_a_get_only_shows_the_button(shop: Shop, http: httpx.AsyncClient) -> None:
    """Mail scanners fetch links: a GET must never unsubscribe."""
    path = link_of(await reminder_sent(shop))
    page = await http.get(path)
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "<button" in page.text
    assert page.headers["cache-control"] == "no-store"
    await shop.sleep(days=2)
    assert suppressions(shop) == 0
    assert [m.step for m in shop.outbox_mail()] == ["reminder", "incentive"]


async def test_forged_cut_and_borrowed_tokens_change_nothing(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    ana = link_of(await reminder_sent(shop, "c-1"))
    ben = link_of(await reminder_sent(shop, "c-2"))
    ana_id, ana_mac = ana.removeprefix("/unsubscribe/").split(".")
    ben_id = ben.removeprefix("/unsubscribe/").split(".")[0]
    flipped = ana[:-1] + ("A" if ana[-1] != "A" else "B")
    borrowed = f"/unsubscribe/{ben_id}.{ana_mac}"  # Ana's signature on Ben's e-mail
    # Genuinely signed, but for no e-mail we sent.
    unknown = "/unsubscribe/" + UnsubscribeLinks(secret=DEV_SECRET, public_url="").token("f" * 32)
    for path in (flipped, ana[:-6], f"/unsubscribe/{ana_id}", borrowed, unknown):
        for method in ("GET", "POST"):
            reply = await http.request(method, path)
            assert reply.status_code == 400, (method, path)
            assert "not valid" in reply.text and "nothing was changed" in reply.text
    assert suppressions(shop) == 0
    await shop.sleep(days=2)
    assert len([m for m in shop.outbox_mail() if m.step == "incentive"]) == 2


async def test_transactional_journeys_carry_no_list_unsubscribe(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    exempt = GUARDRAILS_OFF.model_copy(update={"exempt": ["abandoned_cart"]})
    async with Shop(env, sqlite_url, tmp_path, guardrails=exempt) as shop:
        message = await reminder_sent(shop)
    assert message["List-Unsubscribe"] is None
    assert message["List-Unsubscribe-Post"] is None


async def test_the_eml_carries_list_unsubscribe_as_a_plain_url(shop: Shop) -> None:
    """Mail clients read the header as a URL: never folded into RFC 2047 encoded-words."""
    await reminder_sent(shop)
    (path,) = shop.outbox.glob("*.eml")
    (line,) = [ln for ln in path.read_bytes().splitlines() if ln.startswith(b"List-Unsubscribe:")]
    assert re.fullmatch(rb"List-Unsubscribe: <http://localhost:8000/unsubscribe/[\w.-]+>", line)


async def test_one_click_answers_at_once_while_temporal_is_down_and_the_journey_ends_after(
    shop: Shop,
) -> None:
    path = link_of(await reminder_sent(shop))
    # Nothing listens there: every call to "Temporal" is refused, then retried for 3 s.
    down = await Client.connect(
        "127.0.0.1:9", lazy=True, retry_config=RetryConfig(max_elapsed_time_millis=3000)
    )
    app = create_app(
        shop.settings,
        client=down,
        journeys=shop.journeys,
        session_factory=shop.sessions,
        clock=shop.now_sync,
    )
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        started = time.monotonic()
        reply = await http.post(
            path,
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answered = time.monotonic() - started
    assert reply.status_code == 200 and "unsubscribed" in reply.text
    assert answered < 1.5
    assert ended_at(shop) == [None]  # stored, and marked to do

    # Temporal is back: the API's follow-up (every 30 s) ends the journey, once.
    assert await follow_up(shop.env.client, shop.sessions, clock=shop.now_sync) == 1
    assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
        exit_reason="unsubscribed", sent=["reminder"]
    )
    assert ended_at(shop) != [None]
    assert await follow_up(shop.env.client, shop.sessions, clock=shop.now_sync) == 0


def ended_at(shop: Shop) -> list[Any]:
    with shop.sessions() as session:
        return list(session.scalars(select(Suppression.journeys_ended_at)))
