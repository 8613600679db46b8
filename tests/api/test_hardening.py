"""Bad input from attackers and careless clients (#17): a clear 4xx for each, and one bad
event never sinks the good ones beside it in a batch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.conftest import ADMIN_KEY, Api
from tests.harness import Shop
from triggermail.store import Event

GOOD = {"type": "track", "userId": "u-good", "event": "Note", "messageId": "good"}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def deep_json(event: dict[str, Any], depth: int) -> str:
    """``event`` with ``properties`` nested ``depth`` levels, deeper than json.dumps goes."""
    return json.dumps(event)[:-1] + ', "properties": ' + '{"k":' * depth + "{}" + "}" * depth + "}"


def stored(shop: Shop) -> list[str]:
    with shop.sessions() as session:
        return list(session.scalars(select(Event.message_id).order_by(Event.id)))


def refusal_of(body: dict[str, Any]) -> tuple[int, str]:
    """The index and first field of the one refusal in a reply."""
    (refusal,) = body["refused"]
    return refusal["index"], refusal["errors"][0]["field"]


BAD_TIMES = [
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
    ({"timestamp": "9999-12-31T23:59:00-01:00"}, "timestamp"),
    ({"sentAt": "9999-12-31T00:00:00Z", "originalTimestamp": "0001-01-01T00:00:00Z"}, "sentAt"),
    ({"sentAt": "0001-01-01T00:00:00Z", "originalTimestamp": "9999-12-31T00:00:00Z"}, "sentAt"),
]


@pytest.mark.parametrize(("times", "field"), BAD_TIMES)
async def test_a_time_out_of_range_is_400_alone_and_in_a_batch(
    api: Api, shop: Shop, times: dict[str, str], field: str
) -> None:
    alone = await api.post("/v1/track", {"userId": "u", "event": "x", **times})
    assert alone.status_code == 400, alone.text
    assert refusal_of(alone.json())[1] in (field, "originalTimestamp")

    batch = await api.post("/v1/batch", {"batch": [GOOD, {**GOOD, "messageId": "bad", **times}]})
    assert batch.status_code == 200, batch.text
    assert refusal_of(batch.json())[0] == 1
    assert stored(shop) == ["good"]


async def test_a_batch_sent_at_that_is_not_a_time_is_400(api: Api) -> None:
    response = await api.post("/v1/batch", {"batch": [], "sentAt": "AAA"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_batch"
    assert response.json()["message"].startswith("sentAt:")


@pytest.mark.parametrize("depth", [40, 254, 600, 980])
async def test_deep_nesting_is_400_naming_the_field(api: Api, shop: Shop, depth: int) -> None:
    deep = deep_json({**GOOD, "messageId": "deep"}, depth)
    response = await api.post("/v1/batch", content=f'{{"batch": [{json.dumps(GOOD)}, {deep}]}}')

    if response.status_code == 400:
        # Deeper than Python's JSON parser goes: the body as a whole cannot be read.
        assert depth > 900 and response.json()["code"] == "invalid_json"
    else:
        assert response.status_code == 200, response.text
        assert refusal_of(response.json()) == (1, "properties")
        assert stored(shop) == ["good"]
    # The digest of a call without a messageId must not fail either.
    alone = await api.post("/v1/track", content=deep_json({"userId": "u", "event": "x"}, depth))
    assert alone.status_code == 400, alone.text


async def test_nesting_as_deep_as_shops_send_is_taken(api: Api) -> None:
    response = await api.post("/v1/track", {**GOOD, "properties": nested(30)})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "event",
    [
        {**GOOD, "properties": {"k\ud800": 1}},
        {**GOOD, "properties": {"k": ["a", "\udfff"]}},
        {**GOOD, "messageId": "m\ud800"},
        {**GOOD, "userId": "u\x00"},
        {**GOOD, "event": "Note\x00"},
    ],
    ids=["surrogate-key", "surrogate-value", "surrogate-message-id", "nul-user", "nul-event"],
)
async def test_text_no_store_can_hold_is_400_alone_and_in_a_batch(
    api: Api, shop: Shop, event: dict[str, Any]
) -> None:
    # ensure_ascii writes a lone surrogate as the JSON escape an attacker would send.
    body = json.dumps(event, ensure_ascii=True).encode()
    alone = await api.post("/v1/track", content=body)
    assert alone.status_code == 400, alone.text
    alone.json()  # the reply itself is valid UTF-8 JSON

    batch = json.dumps({"batch": [GOOD, {"messageId": "bad", **event}]}).encode()
    response = await api.post("/v1/batch", content=batch)
    assert response.status_code == 200, response.text
    assert refusal_of(response.json())[0] == 1
    assert stored(shop) == ["good"]


@pytest.mark.parametrize("field", ["context", "properties", "traits"])
async def test_null_where_the_schema_allows_it_is_taken(api: Api, field: str) -> None:
    call = "identify" if field == "traits" else "track"
    response = await api.post(f"/v1/{call}", {**GOOD, field: None})

    assert response.status_code == 200, response.text
    batch = await api.post("/v1/batch", {"batch": [{**GOOD, "type": call, field: None}]})
    assert batch.status_code == 200, batch.text


async def test_a_batch_of_refusals_only_is_400_never_5xx(api: Api) -> None:
    bad = {**GOOD, "timestamp": "0001-01-01T00:00:00+01:00"}
    response = await api.post("/v1/batch", {"batch": [bad, {**bad, "properties": nested(300)}]})

    assert response.status_code == 400
    body = response.json()
    assert (body["success"], body["code"]) == (False, "invalid_events")
    assert [r["index"] for r in body["refused"]] == [0, 1]


# -- one error shape -------------------------------------------------------------------------


async def test_a_bad_query_or_path_is_400_in_the_error_shape(api: Api) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for response in [
        await api.get("/v1/customers/c-1?events=0", headers=auth),
        await api.get("/unsubscribe/not%20a%20token"),
    ]:
        assert response.status_code == 400, response.text
        body = response.json()
        assert set(body) == {"success", "code", "message"}
        assert (body["success"], body["code"]) == (False, "invalid_request")


async def test_every_reply_names_its_request(api: Api) -> None:
    response = await api.post("/v1/track", GOOD)

    assert len(response.headers["X-Request-Id"]) == 32


async def test_the_customer_card_is_never_cached(api: Api, shop: Shop) -> None:
    await api.post("/v1/identify", {"userId": "c-1", "traits": {"email": "ana@example.com"}})

    response = await api.get("/v1/customers/c-1", headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
