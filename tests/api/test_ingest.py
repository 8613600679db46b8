"""Events over HTTP: what a shop's backend sees for good, bad and partly bad requests."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from tests.api.conftest import ADMIN_KEY, Api, basic
from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from triggermail.store import Cart, Event, Order

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9}


def checkout(user_id: str = "c-1", **extra: Any) -> dict[str, Any]:
    return {
        "userId": user_id,
        "event": "Checkout Started",
        "properties": {"cart_id": f"cart-{user_id}", "products": [TEE]},
        **extra,
    }


def stored(shop: Shop) -> list[Event]:
    with shop.sessions() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


async def journey_status(shop: Shop, customer_id: str) -> WorkflowExecutionStatus | None:
    return (await shop.handle(abandoned_cart_id(customer_id)).describe()).status


# -- accepted --------------------------------------------------------------------------------


async def test_track_starts_the_journey_and_answers_like_segment(api: Api, shop: Shop) -> None:
    response = await api.post("/v1/track", checkout(messageId="m-1"))

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["accepted"] == 1
    assert body["results"] == [
        {"index": 0, "messageId": "m-1", "status": "accepted", "journeys": ["abandoned-cart/c-1"]}
    ]
    assert await journey_status(shop, "c-1") == WorkflowExecutionStatus.RUNNING


async def test_the_same_message_twice_is_a_duplicate_that_changes_nothing(
    api: Api, shop: Shop
) -> None:
    first = await api.post("/v1/track", checkout(messageId="m-1"))
    second = await api.post("/v1/track", checkout(messageId="m-1"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["results"][0]["status"] == "duplicate"
    assert second.json()["duplicates"] == 1
    assert len(stored(shop)) == 1


async def test_unknown_event_names_are_stored_not_rejected(api: Api, shop: Shop) -> None:
    response = await api.post(
        "/v1/track", {"userId": "c-1", "event": "Wishlist Shared", "properties": {"x": 1}}
    )

    assert response.status_code == 200
    (event,) = stored(shop)
    assert (event.event, event.payload["properties"]) == ("Wishlist Shared", {"x": 1})


async def test_the_endpoint_names_the_call_type(api: Api, shop: Shop) -> None:
    await api.post("/v1/identify", {"userId": "c-1", "traits": {"email": "ana@example.com"}})
    await api.post("/v1/page", {"userId": "c-1", "name": "Home"})
    await api.post("/v1/alias", {"userId": "c-1", "previousId": "anon-1"})

    assert [e.type for e in stored(shop)] == ["identify", "page", "alias"]


async def test_gzip_bodies_are_accepted(api: Api, shop: Shop) -> None:
    body = gzip.compress(json.dumps({"batch": [{"type": "track", **checkout()}]}).encode())

    response = await api.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1


async def test_batch_context_and_sent_at_reach_every_event(api: Api, shop: Shop) -> None:
    response = await api.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "c-1", "context": {"locale": "de-DE"}},
                {"type": "page", "userId": "c-1"},
            ],
            "context": {"locale": "fr-FR", "library": {"name": "curl"}},
            "sentAt": "2026-01-01T00:00:00Z",
        },
    )

    assert response.status_code == 200
    first, second = stored(shop)
    assert first.payload["context"] == {"locale": "de-DE", "library": {"name": "curl"}}
    assert second.payload["context"] == {"locale": "fr-FR", "library": {"name": "curl"}}
    assert second.payload["sent_at"].startswith("2026-01-01")


# -- refused ---------------------------------------------------------------------------------


async def test_no_write_key_is_401(api: Api, shop: Shop) -> None:
    response = await api.post("/v1/track", checkout(), headers={"Authorization": ""})

    assert response.status_code == 401
    assert response.json()["message"] == "send the write key as the Basic auth user name"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert stored(shop) == []


async def test_a_wrong_write_key_is_401(api: Api, shop: Shop) -> None:
    for key in ("not-the-key", ADMIN_KEY):
        response = await api.post("/v1/batch", {"batch": []}, headers={"Authorization": basic(key)})
        assert response.status_code == 401
        assert response.json() == {
            "success": False,
            "code": "unauthorized",
            "message": "wrong write key",
        }


async def test_malformed_json_is_400(api: Api) -> None:
    response = await api.post("/v1/batch", content=b'{"batch": [')

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["message"].startswith("the body is not valid JSON: Expecting value")


async def test_a_body_that_is_not_a_batch_is_400(api: Api) -> None:
    response = await api.post("/v1/batch", {"events": []})

    assert response.status_code == 400
    assert response.json()["message"] == 'batch: the body must be {"batch": [events]}'


async def test_broken_gzip_is_400(api: Api) -> None:
    response = await api.post(
        "/v1/track", content=b"not gzip", headers={"Content-Encoding": "gzip"}
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("the body is not valid gzip")


async def test_missing_user_id_and_anonymous_id_is_400_naming_the_field(
    api: Api, shop: Shop
) -> None:
    response = await api.post("/v1/track", {"event": "Checkout Started", "messageId": "m-9"})

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_events"
    assert body["refused"] == [
        {
            "index": 0,
            "messageId": "m-9",
            "status": 400,
            "errors": [{"field": "userId", "message": "userId or anonymousId is required"}],
        }
    ]
    assert body["message"] == (
        "0 of 1 events taken; refused event 0: userId: userId or anonymousId is required"
    )
    assert stored(shop) == []


async def test_a_bad_email_in_traits_is_400_naming_the_field(api: Api) -> None:
    response = await api.post("/v1/identify", {"userId": "c-1", "traits": {"email": "ana@"}})

    assert response.status_code == 400
    (refusal,) = response.json()["refused"]
    (error,) = refusal["errors"]
    assert error["field"] == "traits.email"
    assert error["message"].startswith("value is not a valid email address")


async def test_a_non_numeric_price_is_400_naming_the_product(api: Api) -> None:
    bad = {**TEE, "price": "cheap"}
    response = await api.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "c-1", "event": "Product Added", "properties": bad},
                {
                    "type": "track",
                    "userId": "c-1",
                    "event": "Checkout Started",
                    "properties": {"products": [TEE, bad]},
                },
            ]
        },
    )

    assert response.status_code == 400
    fields = [(r["index"], r["errors"][0]["field"]) for r in response.json()["refused"]]
    assert fields == [(0, "properties.price"), (1, "properties.products[1].price")]
    assert (
        "event 1: properties.products[1].price: Input should be a valid decimal"
        in (response.json()["message"])
    )


async def test_an_event_over_32_kb_is_413(api: Api, shop: Shop) -> None:
    big = {"userId": "c-1", "event": "Note", "properties": {"text": "x" * 33_000}}

    response = await api.post("/v1/track", big)

    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "code": "too_large",
        "message": "the body is over 32 KB",
        "accepted": 0,
        "duplicates": 0,
        "results": [],
        "refused": [],
    }
    assert stored(shop) == []


async def test_a_batch_over_500_kb_is_413_even_gzipped(api: Api, shop: Shop) -> None:
    events = [{"type": "track", "userId": f"c-{i}", "event": "x" * 200} for i in range(2_500)]
    raw = json.dumps({"batch": events}).encode()
    assert len(raw) > 500 * 1024

    plain = await api.post("/v1/batch", content=raw)
    zipped = await api.post(
        "/v1/batch", content=gzip.compress(raw), headers={"Content-Encoding": "gzip"}
    )

    assert (plain.status_code, zipped.status_code) == (413, 413)
    assert plain.json()["message"] == "the body is over 500 KB"
    assert zipped.json()["message"] == "the body is over 500 KB unzipped"
    assert stored(shop) == []


async def test_an_oversized_event_in_a_batch_is_refused_alone(api: Api, shop: Shop) -> None:
    big = {"type": "track", "userId": "c-2", "event": "Note", "properties": {"t": "x" * 33_000}}

    response = await api.post("/v1/batch", {"batch": [{"type": "track", **checkout()}, big]})

    assert response.status_code == 200
    (refusal,) = response.json()["refused"]
    assert (refusal["index"], refusal["status"]) == (1, 413)
    assert refusal["errors"][0]["message"].endswith("bytes, over 32 KB")
    assert [e.user_id for e in stored(shop)] == ["c-1"]


async def test_a_batch_with_one_bad_event_applies_the_good_ones(api: Api, shop: Shop) -> None:
    response = await api.post(
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "c-1", "traits": {"email": "ana@example.com"}},
                {"type": "track", "event": "Product Viewed", "messageId": "orphan"},
                {"type": "track", **checkout(), "messageId": "m-3"},
                "not an event",
            ]
        },
    )

    # Some went in: 200, so the SDK does not resend them; the refused ones are named.
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["code"], body["accepted"]) == (True, "partly_refused", 2)
    assert [(r["index"], r["messageId"], r["errors"]) for r in body["refused"]] == [
        (1, "orphan", [{"field": "userId", "message": "userId or anonymousId is required"}]),
        (3, None, [{"field": "", "message": "an event must be a JSON object"}]),
    ]
    assert [r["index"] for r in body["results"]] == [0, 2]
    assert [e.type for e in stored(shop)] == ["identify", "track"]
    assert await journey_status(shop, "c-1") == WorkflowExecutionStatus.RUNNING


async def test_a_value_the_database_cannot_hold_is_refused_not_retried(
    api: Api, shop: Shop
) -> None:
    too_long = {"type": "track", **checkout(), "properties": {"cart_id": "k" * 300}}

    response = await api.post("/v1/batch", {"batch": [{"type": "track", **checkout()}, too_long]})

    assert response.status_code == 200
    (refusal,) = response.json()["refused"]
    assert refusal["errors"][0]["field"] == "properties.cart_id"


# -- time ------------------------------------------------------------------------------------


async def test_an_import_of_last_years_orders_looks_last_year(api: Api, shop: Shop) -> None:
    now = await shop.now()
    last_year = now - timedelta(days=365)
    response = await api.post(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    **checkout(timestamp=last_year.isoformat()),
                },
                {
                    "type": "track",
                    "userId": "c-1",
                    "event": "Order Completed",
                    "timestamp": (last_year + timedelta(minutes=5)).isoformat(),
                    "properties": {"order_id": "o-1", "total": 24.9, "products": [TEE]},
                },
            ]
        },
    )

    assert response.status_code == 200
    assert [r["journeys"] for r in response.json()["results"]] == [[], ["abandoned-cart/c-1"]]
    with shop.sessions() as session:
        order = session.get(Order, "o-1")
        assert order is not None and order.placed_at == last_year + timedelta(minutes=5)
        cart = session.get(Cart, "cart-c-1")
        assert cart is not None and cart.last_activity_at == last_year
        events = list(session.scalars(select(Event).order_by(Event.id)))
    assert [e.timestamp for e in events] == [last_year, last_year + timedelta(minutes=5)]
    assert all(e.received_at - now < timedelta(minutes=1) for e in events)
    # Last year's checkout started no journey: it would have ended long ago.
    with shop.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 2
    assert shop.ledger() == []


async def test_a_journey_times_from_when_the_cart_changed_not_when_we_heard(
    api: Api, shop: Shop
) -> None:
    now = await shop.now()
    await api.post(
        "/v1/identify",
        {"userId": "c-1", "traits": {"email": "ana@example.com", "marketing_consent": True}},
    )
    # The shop's queue delivered it 20 minutes late.
    await api.post("/v1/track", checkout(timestamp=(now - timedelta(minutes=20)).isoformat()))
    await shop.sleep(minutes=11)

    (reminder,) = shop.outbox_mail()
    assert reminder.at - now < timedelta(minutes=11)


async def test_catalogue_properties_beyond_the_spec_are_checked_by_name(api: Api) -> None:
    response = await api.post(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "userId": "c-1",
                    "event": "Product Viewed",
                    "properties": {**TEE, "stock": -1},
                },
                {
                    "type": "track",
                    "userId": "c-1",
                    "event": "Order Completed",
                    "properties": {
                        "order_id": "o-1",
                        "products": [{**TEE, "repurchase_days": "a while"}],
                    },
                },
            ]
        },
    )

    assert response.status_code == 400
    fields = [(r["index"], r["errors"][0]["field"]) for r in response.json()["refused"]]
    assert fields == [(0, "properties.stock"), (1, "properties.products[0].repurchase_days")]
