"""The customer card, over HTTP and from ``triggermail customer``: one assembly, two doors."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.api.conftest import ADMIN_KEY, WRITE_KEY, Api, basic
from tests.harness import Shop
from triggermail.ops.cli import app
from triggermail.store import Suppression

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def abandon_and_get_the_reminder(api: Api, shop: Shop) -> None:
    await api.post(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "anonymousId": "a-1",
                    "event": "Product Viewed",
                    "properties": TEE,
                },
                {
                    "type": "identify",
                    "userId": "c-1",
                    "anonymousId": "a-1",
                    "traits": {
                        "email": "ana@example.com",
                        "firstName": "Ana",
                        "marketing_consent": True,
                        "timezone": "Europe/Berlin",
                    },
                },
                {
                    "type": "track",
                    "userId": "c-1",
                    "event": "Checkout Started",
                    "properties": {"cart_id": "k-1", "products": [TEE]},
                },
            ]
        },
    )
    await shop.sleep(minutes=31)


async def test_the_card_shows_profile_consent_timeline_emails_and_the_running_journey(
    api: Api, shop: Shop
) -> None:
    await abandon_and_get_the_reminder(api, shop)

    response = await api.get("/v1/customers/c-1", headers=ADMIN)

    assert response.status_code == 200, response.text
    card = response.json()
    assert card["profile"]["email"] == "ana@example.com"
    assert card["profile"]["anonymous_ids"] == ["a-1"]
    assert card["consent"] == {"marketing": True, "suppressed": []}
    assert [(e["type"], e["event"]) for e in card["events"]] == [
        ("track", "Checkout Started"),
        ("identify", None),
        ("track", "Product Viewed"),
    ]
    assert card["events"][0]["data"]["cart_id"] == "k-1"
    assert {"timestamp", "received_at"} <= set(card["events"][0])
    ((journey, step, status),) = [(m["journey"], m["step"], m["status"]) for m in card["emails"]]
    assert (journey, step, status) == ("abandoned_cart", "reminder", "sent")
    (running,) = card["journeys"]
    assert (running["workflow_id"], running["next_step"], running["sent"]) == (
        "abandoned-cart/c-1",
        "incentive",
        ["reminder"],
    )
    assert card["journeys_error"] is None


async def test_the_card_needs_the_admin_key(api: Api, shop: Shop) -> None:
    await api.post("/v1/identify", {"userId": "c-1"})

    without = await api.get("/v1/customers/c-1")  # the write key opens only intake
    wrong = await api.get("/v1/customers/c-1", headers={"Authorization": "Bearer nope"})
    basic_admin = await api.get("/v1/customers/c-1", headers={"Authorization": basic(ADMIN_KEY)})

    assert (without.status_code, wrong.status_code, basic_admin.status_code) == (401, 401, 200)
    assert wrong.json()["message"] == "wrong admin key"


async def test_the_card_says_why_a_consenting_customer_gets_no_marketing(
    api: Api, shop: Shop
) -> None:
    await api.post(
        "/v1/identify",
        {"userId": "c-1", "traits": {"email": "Ana@Example.com", "marketing_consent": True}},
    )
    with shop.sessions() as session:
        session.add(Suppression(customer_id="c-1", reason="unsubscribed", source="link"))
        session.add(Suppression(email="ana@example.com", reason="bounced", source="sendgrid"))
        session.add(Suppression(email="someone@else.com", reason="bounced", source="sendgrid"))
        session.commit()

    card = (await api.get("/v1/customers/c-1", headers=ADMIN)).json()
    suppressed = [(s["reason"], s["source"], s["email"]) for s in card["consent"]["suppressed"]]
    assert card["consent"]["marketing"] is True
    assert suppressed == [
        ("unsubscribed", "link", None),
        ("bounced", "sendgrid", "ana@example.com"),
    ]


async def test_an_unknown_customer_is_404(api: Api) -> None:
    response = await api.get("/v1/customers/nobody", headers=ADMIN)

    assert response.status_code == 404
    assert response.json()["message"] == "no customer 'nobody'"


def run_cli(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def cli_env(shop: Shop) -> dict[str, str]:
    return {
        "TRIGGERMAIL_DATABASE_URL": shop.settings.database_url,
        "TEMPORAL_ADDRESS": shop.env.client.service_client.config.target_host,
        "TRIGGERMAIL_WRITE_KEY": WRITE_KEY,
    }


async def test_triggermail_customer_prints_the_same_card(
    api: Api, shop: Shop, cli_env: dict[str, str]
) -> None:
    await abandon_and_get_the_reminder(api, shop)
    over_http = (await api.get("/v1/customers/c-1", headers=ADMIN)).json()

    # The command runs its own event loop; the shop's worker answers from this one.
    as_json = await asyncio.to_thread(run_cli, "customer", "c-1", "--json", env=cli_env)
    tables = await asyncio.to_thread(run_cli, "customer", "c-1", env=cli_env)

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["events"] == over_http["events"][:20]
    assert json.loads(as_json.output)["journeys"] == over_http["journeys"]
    assert tables.exit_code == 0, tables.output
    for seen in ("ana@example.com", "abandoned-cart/c-1", "incentive", "reminder", "sent"):
        assert seen in tables.output


async def test_triggermail_customer_without_temporal_still_shows_the_store(
    api: Api, shop: Shop, cli_env: dict[str, str]
) -> None:
    await api.post("/v1/identify", {"userId": "c-1", "traits": {"email": "ana@example.com"}})

    result = await asyncio.to_thread(
        run_cli, "customer", "c-1", "--json", env={**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    )

    card = json.loads(result.output)
    assert (card["profile"]["email"], card["journeys"]) == ("ana@example.com", None)
    assert card["journeys_error"] == "Temporal unreachable at 127.0.0.1:1"


async def test_triggermail_customer_names_an_unknown_customer(cli_env: dict[str, str]) -> None:
    result = await asyncio.to_thread(run_cli, "customer", "nobody", env=cli_env)

    assert result.exit_code == 1
    assert "no customer 'nobody'" in result.output


def test_triggermail_api_needs_a_write_key() -> None:
    result = run_cli("api", env={"TRIGGERMAIL_WRITE_KEY": ""})

    assert result.exit_code == 2
    assert "set TRIGGERMAIL_WRITE_KEY" in result.output


async def test_received_and_happened_times_are_both_on_the_card(api: Api, shop: Shop) -> None:
    now = await shop.now()
    happened = now - timedelta(days=3)
    await api.post("/v1/identify", {"userId": "c-1", "timestamp": happened.isoformat()})

    (event,) = (await api.get("/v1/customers/c-1", headers=ADMIN)).json()["events"]

    assert event["timestamp"].startswith(happened.strftime("%Y-%m-%dT%H:%M"))
    assert event["received_at"].startswith(now.strftime("%Y-%m-%dT%H"))


async def test_traits_sent_in_context_show_on_the_card_and_the_profile(api: Api) -> None:
    # RudderStack's SDKs put an identify's traits in context.traits.
    await api.post(
        "/v1/identify",
        {"userId": "c-1", "context": {"traits": {"email": "ana@example.com", "plan": "gold"}}},
    )

    card = (await api.get("/v1/customers/c-1", headers=ADMIN)).json()

    assert card["events"][0]["data"] == {"email": "ana@example.com", "plan": "gold"}
    assert (card["profile"]["email"], card["profile"]["traits"]["plan"]) == (
        "ana@example.com",
        "gold",
    )
