"""SendGrid's signed Event Webhook: what happened to each e-mail after it left.

SendGrid signs ``timestamp + raw body`` with ECDSA (P-256, SHA-256); the key it shows
under Mail Settings goes in ``TRIGGERMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY``. A request
with a bad signature or a timestamp far from now (a replay) is refused and changes
nothing. Each event is stored once by its ``sg_event_id`` (SendGrid retries batches),
mapped to our ledger through the ``send_id`` we put in ``custom_args``:

* ``bounce`` (hard), ``dropped`` → the address is suppressed;
* ``spamreport``, ``unsubscribe``, ``group_unsubscribe`` → the customer and address are,
  and the customer's running journeys are signalled to end, as our own unsubscribe does;
* ``delivered``, ``open``, ``click`` and the rest → recorded for reporting; a send the
  ledger left ``unknown`` that SendGrid reports is settled ``sent``.

Unknown event types are stored like the rest and never spoil the batch; nor does an event
with a field the store cannot hold (it is counted ``ignored``). The body is read only after
the signature headers are seen, and never past :data:`MAX_WEBHOOK_BYTES`. The answer does
not wait for Temporal: journeys end after it, as for our own unsubscribe.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from triggermail.store import EmailEvent, EmailSend, Suppression, insert_for
from triggermail.web.unsubscribe import follow_up

log = logging.getLogger("triggermail.web.webhooks")

MAX_WEBHOOK_BYTES = 2 * 1024 * 1024
"""SendGrid posts a batch when it reaches 768 KB (or every 30 s); this leaves room."""
MAX_SKEW = timedelta(minutes=10)
"""A signed request older (or newer) than this is a replay, or a clock to fix."""
SUPPRESS = {
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "spamreport",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
CUSTOMER_WIDE = frozenset({"spamreport", "unsubscribed"})
"""The person asked to stop; a bounce or drop is about the address only."""
REACHED_SENDGRID = frozenset({"processed", "deferred", "delivered", "open", "click", "bounce"})


def sendgrid_webhook_router(public_key: str, *, clock: Callable[[], datetime]) -> APIRouter:
    """``POST /webhooks/sendgrid``; it reads the store from ``app.state.sessions``.

    The API mounts it only with ``TRIGGERMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY`` set: without a
    key nothing could be verified, so nothing is accepted (404).
    """
    verifier = EventWebhook(public_key)
    router = APIRouter(tags=["webhooks"])

    @router.post(
        "/webhooks/sendgrid",
        summary="SendGrid's signed Event Webhook",
        responses={
            200: {"description": "Stored (duplicates and unknown events included)."},
            400: {"description": "The body is not a JSON array of events."},
            403: {"description": "Bad or missing signature, or a stale timestamp."},
            413: {"description": "The body is over 2 MB (SendGrid's batches stay under 1 MB)."},
            503: {"description": "The store is unavailable: SendGrid retries."},
        },
    )
    async def sendgrid_events(request: Request, background: BackgroundTasks) -> JSONResponse:
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not signature or not timestamp:
            # Unsigned: refused before a byte of the body is read.
            return _reply(403, "bad_signature", "the signature does not match the body")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return _reply(413, "too_large", f"the body is over {MAX_WEBHOOK_BYTES // 1024} KB")
        try:
            signed_at = datetime.fromtimestamp(int(timestamp), UTC)
            valid = verifier.verify_signature(body.decode("utf-8"), signature, timestamp)
        except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
            valid = False
        if not valid:
            return _reply(403, "bad_signature", "the signature does not match the body")
        if abs(clock() - signed_at) > MAX_SKEW:
            return _reply(403, "stale", "the signed timestamp is too far from now")
        try:
            events = json.loads(body)
        except ValueError:
            events = None
        if not isinstance(events, list):
            return _reply(400, "invalid_body", "the body must be a JSON array of events")
        now = clock()
        try:
            counts, leaving = await asyncio.to_thread(
                record, request.app.state.sessions, events, now
            )
        except DBAPIError as err:
            log.warning("SendGrid batch not stored, answering 503: %s", err)
            return _reply(503, "unavailable", "the store is unavailable, retry")
        for customer in leaving:
            background.add_task(
                follow_up,
                request.app.state.temporal,
                request.app.state.sessions,
                clock=clock,
                customer_id=customer,
            )
        return JSONResponse(counts)

    return router


def record(
    sessions: sessionmaker[Session], events: list[Any], received_at: datetime
) -> tuple[dict[str, int], set[str]]:
    """Store each event once and apply what it means.

    Returns what happened to the batch, and the customers who asked to stop.
    """
    counts = {"recorded": 0, "duplicates": 0, "ignored": 0}
    leaving: set[str] = set()
    with sessions() as session:
        insert = insert_for(session)
        for event in events:
            parsed = _parse(event)
            if parsed is None:
                counts["ignored"] += 1
                continue
            event_id, kind, occurred_at, send_id = parsed
            # Each event in a savepoint: one the database refuses is ignored, not the batch.
            savepoint = session.begin_nested()
            try:
                # RETURNING, not rowcount: an ORM-enabled INSERT … ON CONFLICT DO NOTHING
                # does not report a skipped row through rowcount on PostgreSQL.
                inserted = session.execute(
                    insert(EmailEvent)
                    .values(
                        provider_event_id=event_id,
                        send_id=send_id,
                        event=kind,
                        occurred_at=occurred_at,
                        received_at=received_at,
                        payload=event,
                    )
                    .on_conflict_do_nothing(index_elements=["provider_event_id"])
                    .returning(EmailEvent.id)
                )
                if inserted.first() is None:
                    savepoint.commit()
                    counts["duplicates"] += 1
                    continue
                customer_id = _apply(session, event, kind, send_id, occurred_at)
                session.flush()
                savepoint.commit()
            except DBAPIError as err:
                if not isinstance(err, DataError):
                    raise  # the store is down or busy: SendGrid retries the whole batch
                savepoint.rollback()
                log.warning("SendGrid event %r not stored: %s", event_id[:64], err)
                counts["ignored"] += 1
                continue
            except StatementError as err:  # a value a column's type refused before sending
                savepoint.rollback()
                log.warning("SendGrid event %r not stored: %s", event_id[:64], err)
                counts["ignored"] += 1
                continue
            counts["recorded"] += 1
            if customer_id is not None:
                leaving.add(customer_id)
        session.commit()
    return counts, leaving


def _parse(event: Any) -> tuple[str, str, datetime, str | None] | None:
    if not isinstance(event, dict):
        return None
    event_id, kind, timestamp = event.get("sg_event_id"), event.get("event"), event.get("timestamp")
    if not _fits(event_id, 255) or not _fits(kind, 10_000):
        return None  # not SendGrid's: its ids are short, its event names plain words
    try:
        occurred_at = datetime.fromtimestamp(int(timestamp), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    send_id = event.get("send_id")
    # Our ledger ids are 32 characters: a longer one names no e-mail of ours.
    return event_id, kind[:32], occurred_at, send_id if _fits(send_id, 32) else None


def _fits(value: Any, length: int) -> TypeGuard[str]:
    """A non-empty string of at most ``length`` characters that any text column can hold."""
    if not isinstance(value, str) or not 0 < len(value) <= length or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        return False
    return True


def _apply(
    session: Session, event: dict[str, Any], kind: str, send_id: str | None, at: datetime
) -> str | None:
    """Settle the ledger and suppress; returns the customer who asked to stop, if one did."""
    row = session.get(EmailSend, send_id) if send_id else None
    if row is not None and row.status == "unknown" and kind in REACHED_SENDGRID:
        # The provider call's answer was lost; SendGrid says it took the e-mail after all.
        row.status, row.sent_at = "sent", row.sent_at or at
    reason = SUPPRESS.get(kind)
    if reason is None or (kind == "bounce" and event.get("type", "bounce") != "bounce"):
        return None  # a "blocked" bounce is temporary: the address may work tomorrow
    email = event.get("email")
    # An address no mailbox can have (RFC 5321: 320 characters at most) is no address.
    address = email.lower() if _fits(email, 320) else None
    customer_id = row.customer_id if row is not None and reason in CUSTOMER_WIDE else None
    if address is None and customer_id is None:
        return None
    session.add(
        Suppression(
            customer_id=customer_id,
            email=address,
            reason=reason,
            source="sendgrid",
            send_id=row.id if row is not None else None,
            created_at=at,
        )
    )
    return customer_id


def _reply(status: int, code: str, message: str) -> JSONResponse:
    # The API's one error shape (triggermail.web.errors.Problem).
    return JSONResponse({"success": False, "code": code, "message": message}, status_code=status)
