"""SendGrid's signed Event Webhook, with SendGrid's own sample events, on a shop that sends
through SendGrid's HTTP API (a fake on loopback)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from tests.fakes.sendgrid import FakeSendGrid
from tests.guardrails.conftest import SIGNING_KEY
from tests.harness import Shop
from triggermail.ids import abandoned_cart_id
from triggermail.store import EmailEvent, EmailSend, Suppression
from triggermail.web.webhooks import MAX_WEBHOOK_BYTES
from workflows.types import JourneyResult

TEE = {"product_id": "tee-1", "name": "Organic cotton T-shirt", "price": 24.9, "cart_id": "k-1"}
HOOK = "/webhooks/sendgrid"


@pytest.fixture
async def shop(
    env: WorkflowEnvironment, store_url: str, tmp_path: Path, sendgrid: FakeSendGrid
) -> AsyncIterator[Shop]:
    # The webhook's dedupe and suppression writes run on both stores we support.
    async with Shop(env, store_url, tmp_path, sendgrid_url=sendgrid.url) as shop:
        yield shop


def sample_events(send_id: str, address: str, at: int) -> list[dict[str, Any]]:
    """SendGrid's sample events (Event Webhook reference), for our e-mail: its ``send_id``
    custom arg comes back as a top-level field."""
    common = {
        "email": address,
        "timestamp": at,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "category": "cat facts",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "send_id": send_id,
    }
    return [
        {**common, "event": "processed", "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A=="},
        {
            **common,
            "event": "delivered",
            "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
            "response": "250 OK",
        },
        {
            **common,
            "event": "open",
            "sg_event_id": "FOTFFO0ecsBE-zxFXfs6WA==",
            "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP)",
            "ip": "255.255.255.255",
        },
        {
            **common,
            "event": "click",
            "sg_event_id": "kCAi1KttyQdEKHhdC-nuEA==",
            "useragent": "Mozilla/4.0",
            "ip": "255.255.255.255",
            "url": "http://www.sendgrid.com/",
        },
        {**common, "event": "a_new_event_type", "sg_event_id": "bm8tc3VjaC1ldmVudC15ZXQ="},
        {
            **common,
            "event": "bounce",
            "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "reason": "500 unknown recipient",
            "status": "5.0.0",
            "type": "bounce",
        },
    ]


def signed(body: bytes, at: int) -> dict[str, str]:
    """The headers SendGrid adds: ECDSA P-256 over the timestamp followed by the raw body."""
    signature = SIGNING_KEY.sign(str(at).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(at),
    }


async def reminder_sent(shop: Shop) -> EmailSend:
    await shop.identify("c-1", email="ana@example.com", firstName="Ana")
    await shop.track("c-1", "Product Added", **TEE)
    await shop.sleep(minutes=31)
    (row,) = shop.ledger()
    assert row.status == "sent"
    return row


def events(shop: Shop) -> list[str]:
    with shop.sessions() as session:
        return list(session.scalars(select(EmailEvent.event).order_by(EmailEvent.id)))


def suppressed(shop: Shop) -> list[tuple[str | None, str | None, str]]:
    with shop.sessions() as session:
        rows = session.scalars(select(Suppression).order_by(Suppression.id))
        return [(s.customer_id, s.email, s.reason) for s in rows]


async def test_sendgrid_gets_the_unsubscribe_headers_and_only_our_send_id(
    shop: Shop, sendgrid: FakeSendGrid
) -> None:
    row = await reminder_sent(shop)
    ((_status, body),) = sendgrid.requests
    headers = body["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<http://localhost:8000/unsubscribe/")
    assert body["custom_args"] == {"send_id": row.id}


async def test_a_signed_batch_is_recorded_once_and_a_bounce_suppresses_later_sends(
    shop: Shop, http: httpx.AsyncClient, sendgrid: FakeSendGrid
) -> None:
    row = await reminder_sent(shop)
    at = int((await shop.tick()).timestamp())
    body = json.dumps(sample_events(row.id, "ana@example.com", at)).encode()

    reply = await http.post(HOOK, content=body, headers=signed(body, at))
    assert reply.status_code == 200
    assert reply.json() == {"recorded": 6, "duplicates": 0, "ignored": 0}
    assert events(shop) == ["processed", "delivered", "open", "click", "a_new_event_type", "bounce"]
    assert suppressed(shop) == [(None, "ana@example.com", "bounced")]

    # SendGrid retries a batch it thinks failed: nothing is recorded twice.
    again = await http.post(HOOK, content=body, headers=signed(body, at))
    assert again.json() == {"recorded": 0, "duplicates": 6, "ignored": 0}
    assert len(events(shop)) == 6 and len(suppressed(shop)) == 1

    await shop.sleep(days=2)
    assert len(sendgrid.accepted) == 1  # the reminder only
    incentive = next(r for r in shop.ledger() if r.step == "incentive")
    assert (incentive.status, incentive.reason) == ("skipped", "bounced")
    assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
        exit_reason="bounced", sent=["reminder"]
    )


async def test_spam_complaint_and_unsubscribe_suppress_the_customer(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    row = await reminder_sent(shop)
    at = int((await shop.tick()).timestamp())
    common = {"email": "Ana@Example.com", "timestamp": at, "send_id": row.id}
    batch = [
        {**common, "event": "spamreport", "sg_event_id": "37nvH5QBz858KGVYCM4uOA=="},
        {
            **common,
            "event": "group_unsubscribe",
            "sg_event_id": "ahSCB7xYcXFb-hEaawsPRw==",
            "asm_group_id": 10,
        },
        {"event": "delivered", "timestamp": at},  # no sg_event_id: ignored, not fatal
        "not an event",
    ]
    body = json.dumps(batch).encode()
    reply = await http.post(HOOK, content=body, headers=signed(body, at))
    assert reply.json() == {"recorded": 2, "duplicates": 0, "ignored": 2}
    assert suppressed(shop) == [
        ("c-1", "ana@example.com", "spamreport"),
        ("c-1", "ana@example.com", "unsubscribed"),
    ]
    assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
        exit_reason="unsubscribed", sent=["reminder"]
    )


async def test_bad_signatures_and_stale_timestamps_change_nothing(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    row = await reminder_sent(shop)
    now = int((await shop.tick()).timestamp())
    body = json.dumps(sample_events(row.id, "ana@example.com", now)).encode()
    tampered = body.replace(b'"bounce"', b'"delivered"')
    stale = now - 3600  # a genuine request, replayed an hour later

    for payload, headers in [
        (tampered, signed(body, now)),  # body changed after signing
        (body, {**signed(body, now), "X-Twilio-Email-Event-Webhook-Timestamp": str(now + 1)}),
        (body, {**signed(body, now), "X-Twilio-Email-Event-Webhook-Signature": "bm9wZQ=="}),
        (body, {**signed(body, now), "X-Twilio-Email-Event-Webhook-Signature": "%%%"}),
        (body, {"Content-Type": "application/json"}),  # unsigned
    ]:
        reply = await http.post(HOOK, content=payload, headers=headers)
        assert reply.status_code == 403 and reply.json()["code"] == "bad_signature"
    reply = await http.post(HOOK, content=body, headers=signed(body, stale))
    assert reply.status_code == 403 and reply.json()["code"] == "stale"

    assert events(shop) == [] and suppressed(shop) == []


async def test_a_send_left_unknown_is_settled_by_sendgrids_report(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    row = await reminder_sent(shop)
    with shop.sessions() as session:
        stored = session.get(EmailSend, row.id)
        assert stored is not None
        stored.status = "unknown"  # as if the answer to the provider call had been lost
        session.commit()
    at = int((await shop.tick()).timestamp())
    body = json.dumps(sample_events(row.id, "ana@example.com", at)[1:2]).encode()
    assert (await http.post(HOOK, content=body, headers=signed(body, at))).status_code == 200
    assert next(r.status for r in shop.ledger() if r.id == row.id) == "sent"


async def test_one_field_the_store_cannot_hold_spoils_only_its_own_event(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    row = await reminder_sent(shop)
    at = int((await shop.tick()).timestamp())
    common = {"email": "ana@example.com", "timestamp": at, "send_id": row.id}
    batch = [
        {**common, "event": "delivered", "sg_event_id": "x" * 256},
        {**common, "event": "open", "sg_event_id": "e-2", "email": "a" * 321 + "@example.com"},
        {**common, "event": "click", "sg_event_id": "e-3", "send_id": "s" * 33},
        {**common, "event": "deliv\x00ered", "sg_event_id": "e-4"},
        {**common, "event": "processed", "sg_event_id": "e-5\udc00"},
        {**common, "event": "spamreport", "sg_event_id": "e-6"},
    ]
    body = json.dumps(batch).encode()

    reply = await http.post(HOOK, content=body, headers=signed(body, at))

    assert reply.status_code == 200, reply.text
    assert reply.json() == {"recorded": 3, "duplicates": 0, "ignored": 3}
    assert events(shop) == ["open", "click", "spamreport"]
    assert suppressed(shop) == [("c-1", "ana@example.com", "spamreport")]
    assert await shop.handle(abandoned_cart_id("c-1")).result() == JourneyResult(
        exit_reason="unsubscribed", sent=["reminder"]
    )


async def test_a_body_is_read_only_when_signed_and_never_past_the_limit(
    shop: Shop, http: httpx.AsyncClient
) -> None:
    at = int((await shop.tick()).timestamp())
    chunk = b" " * 65536
    read: list[int] = []

    async def endless() -> Any:
        for _ in range(300 * 16):  # 300 MB, if anyone read it all
            read.append(len(chunk))
            yield chunk

    reply = await http.post(HOOK, content=endless(), headers={"Content-Type": "application/json"})
    assert (reply.status_code, reply.json()["code"]) == (403, "bad_signature")
    assert sum(read) <= len(chunk)

    read.clear()
    reply = await http.post(HOOK, content=endless(), headers=signed(b"[]", at))
    assert (reply.status_code, reply.json()["code"]) == (413, "too_large")
    assert sum(read) <= MAX_WEBHOOK_BYTES + 2 * len(chunk)

    big = {**signed(b"[]", at), "Content-Length": str(300 * 1024 * 1024)}
    read.clear()
    reply = await http.post(HOOK, content=endless(), headers=big)
    assert (reply.status_code, reply.json()["code"]) == (413, "too_large")
    assert sum(read) <= len(chunk)
    assert set(reply.json()) == {"success", "code", "message"}
