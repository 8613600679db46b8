"""One-click unsubscribe (RFC 8058): the pages behind every marketing e-mail's link.

``GET /unsubscribe/{token}`` only shows a page with a button: mail scanners and link
previews fetch links, and a fetch must never unsubscribe anyone. ``POST`` to the same
URL — the button, or a mail client's one-click ``List-Unsubscribe=One-Click`` — puts
the customer on the suppression list at once and ends every running journey of theirs.
A forged, altered or cut token changes nothing and gets a 400 page.

The answer comes from the store alone: mail clients give a one-click POST a few seconds.
The suppression row stays marked to do (``journeys_ended_at`` empty) until Temporal has
taken every exit signal; :func:`follow_up` tries right after the answer, and the API
tries again every :data:`FOLLOW_UP_EVERY` while Temporal is away. Meanwhile the send
activity's suppression check already stops every e-mail.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starter.starting import end_journey, journey_ids
from triggermail.journeys import Shop
from triggermail.links import SecretMissing, UnsubscribeLinks, signing_secret
from triggermail.settings import Settings
from triggermail.store import EmailSend, Suppression
from workflows.registry import customer_journey_ids
from workflows.types import JourneyExit

log = logging.getLogger("triggermail.web.unsubscribe")

SIGNAL_TIMEOUT = timedelta(seconds=5)
"""Per exit signal; nobody waits for them (they follow the answer)."""
FOLLOW_UP_EVERY = timedelta(seconds=30)
"""How often the API looks for unsubscribes whose journeys Temporal has not ended yet."""
FOLLOW_UP_BATCH = 100
CUSTOMER_WIDE = ("unsubscribed", "spamreport")
"""Suppressions of a person (not of an address): their journeys end."""

Token = Annotated[
    str,
    # Loose on purpose: a token cut or altered inside this shape still gets the 400 page
    # that tells the customer what happened.
    Path(max_length=200, pattern=r"^[A-Za-z0-9._-]+$", description="The e-mail's signed token."),
]


def unsubscribe_router(settings: Settings, *, clock: Callable[[], datetime]) -> APIRouter:
    """The unsubscribe pages; they read the store, Temporal client and shop from ``app.state``."""
    try:
        links: UnsubscribeLinks | None = UnsubscribeLinks(
            secret=signing_secret(settings), public_url=settings.public_url
        )
    except SecretMissing as err:
        log.error("unsubscribe links cannot be checked: %s", err)
        links = None
    router = APIRouter(tags=["unsubscribe"])

    def customer_of(request: Request, token: str) -> tuple[str, str] | None:
        """(send id, customer id) of a genuine token for an e-mail we sent; None otherwise."""
        send_id = links.verify(token) if links else None
        if send_id is None:
            return None
        sessions: sessionmaker[Session] = request.app.state.sessions
        with sessions() as session:
            customer_id = session.scalar(
                select(EmailSend.customer_id).where(EmailSend.id == send_id)
            )
        return (send_id, customer_id) if customer_id else None

    @router.get(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        summary="Confirmation page with an unsubscribe button (a GET never unsubscribes)",
        responses={400: {"description": "Not a link we sent: nothing changes."}},
    )
    async def confirm(request: Request, token: Token) -> HTMLResponse:
        shop = _shop(request)
        if await asyncio.to_thread(customer_of, request, token) is None:
            return _invalid(shop)
        action = html.escape(f"{settings.public_url.rstrip('/')}/unsubscribe/{token}")
        return _page(
            shop,
            "Unsubscribe?",
            f"<p>You will get no more marketing e-mails from {html.escape(shop.name)}.</p>"
            f'<form method="post" action="{action}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>',
        )

    @router.post(
        "/unsubscribe/{token}",
        response_class=HTMLResponse,
        summary="Unsubscribe now (RFC 8058 one-click, or the page's button)",
        responses={400: {"description": "Not a link we sent: nothing changes."}},
    )
    async def unsubscribe(
        request: Request, token: Token, background: BackgroundTasks
    ) -> HTMLResponse:
        shop = _shop(request)
        found = await asyncio.to_thread(customer_of, request, token)
        if found is None:
            return _invalid(shop)
        send_id, customer_id = found
        now = clock()
        await asyncio.to_thread(_suppress, request.app.state.sessions, customer_id, send_id, now)
        # After the answer is sent: the customer is suppressed already, Temporal may be away.
        background.add_task(
            follow_up,
            request.app.state.temporal,
            request.app.state.sessions,
            clock=clock,
            customer_id=customer_id,
        )
        return _page(
            shop,
            "You are unsubscribed",
            f"<p>{html.escape(shop.name)} will send you no more marketing e-mails.</p>",
        )

    return router


def _suppress(
    sessions: sessionmaker[Session], customer_id: str, send_id: str, at: datetime
) -> None:
    with sessions() as session:
        already = session.scalar(
            select(Suppression.id).where(
                Suppression.customer_id == customer_id, Suppression.reason == "unsubscribed"
            )
        )
        if already is None:
            session.add(
                Suppression(
                    customer_id=customer_id,
                    reason="unsubscribed",
                    source="link",
                    send_id=send_id,
                    created_at=at,
                )
            )
            session.commit()


async def end_journeys(
    client: Client,
    customer_id: str,
    at: datetime,
    *,
    sessions: sessionmaker[Session] | None = None,
) -> bool:
    """Signal every journey of the customer to end; the suppression already stops any send.

    With ``sessions``, the journeys of the customer's orders and products too (found from
    the store); without, the one-per-customer journeys. Returns whether Temporal took every
    signal (a journey it does not know counts as ended); False is worth another try.
    """
    ids = (
        await asyncio.to_thread(journey_ids, sessions, customer_id, at)
        if sessions is not None
        else {name: [wid] for name, wid in customer_journey_ids(customer_id).items()}
    )
    workflow_ids = [wid for wids in ids.values() for wid in wids]
    # Together, not in turn: an unreachable Temporal costs one round of retries, not one each.
    ended = await asyncio.gather(*(_end(client, wid, at) for wid in workflow_ids))
    return all(ended)


async def _end(client: Client, workflow_id: str, at: datetime) -> bool:
    try:
        await end_journey(
            client,
            workflow_id,
            JourneyExit(reason="unsubscribed", at=at),
            rpc_timeout=SIGNAL_TIMEOUT,
        )
    except RPCError as err:
        # The send activity's suppression check still stops every e-mail.
        log.warning("could not end %s after an unsubscribe: %s", workflow_id, err.message)
        # A signal Temporal refuses as malformed would be refused on every later try too.
        return err.status == RPCStatusCode.INVALID_ARGUMENT
    return True


async def follow_up(
    client: Client,
    sessions: sessionmaker[Session],
    *,
    clock: Callable[[], datetime],
    customer_id: str | None = None,
) -> int:
    """End the journeys of unsubscribed or complaining customers not ended yet, and mark
    their suppressions done; only ``customer_id``'s when given. Returns how many ended.

    Safe to run anywhere, any number of times at once: an exit signal twice changes nothing.
    """
    pending = await asyncio.to_thread(_pending, sessions, customer_id)
    done: list[int] = []
    for customer, rows in pending.items():
        # Signalled as of the unsubscribe: the journeys it must end are those alive then.
        if await end_journeys(client, customer, min(at for _, at in rows), sessions=sessions):
            done += [row_id for row_id, _ in rows]
    if done:
        await asyncio.to_thread(_mark_ended, sessions, done, clock())
    return len(done)


async def follow_up_forever(
    client: Client, sessions: sessionmaker[Session], *, clock: Callable[[], datetime]
) -> None:
    """:func:`follow_up` every :data:`FOLLOW_UP_EVERY`, until cancelled (the API's lifespan)."""
    while True:
        await asyncio.sleep(FOLLOW_UP_EVERY.total_seconds())
        try:
            await follow_up(client, sessions, clock=clock)
        except Exception:
            # The store may be down too; the rows wait for the next round.
            log.exception("unsubscribe follow-up failed; trying again later")


def _pending(
    sessions: sessionmaker[Session], customer_id: str | None
) -> dict[str, list[tuple[int, datetime]]]:
    query = (
        select(Suppression.id, Suppression.customer_id, Suppression.created_at)
        .where(
            Suppression.journeys_ended_at.is_(None),
            Suppression.customer_id.is_not(None),
            Suppression.reason.in_(CUSTOMER_WIDE),
        )
        .order_by(Suppression.id)
        .limit(FOLLOW_UP_BATCH)
    )
    if customer_id is not None:
        query = query.where(Suppression.customer_id == customer_id)
    by_customer: dict[str, list[tuple[int, datetime]]] = {}
    with sessions() as session:
        for row_id, customer, at in session.execute(query):
            if customer is not None:  # the query's own condition; for the type checker
                by_customer.setdefault(customer, []).append((row_id, at))
    return by_customer


def _mark_ended(sessions: sessionmaker[Session], ids: list[int], at: datetime) -> None:
    with sessions() as session:
        session.execute(
            update(Suppression)
            .where(Suppression.id.in_(ids), Suppression.journeys_ended_at.is_(None))
            .values(journeys_ended_at=at)
        )
        session.commit()


def _shop(request: Request) -> Shop:
    shop: Shop = request.app.state.intake.journeys.shop
    return shop


def _invalid(shop: Shop) -> HTMLResponse:
    return _page(
        shop,
        "This link is not valid",
        "<p>This unsubscribe link is broken or was changed, so nothing was changed. "
        "Use the link in the e-mail as it came, or "
        f'<a href="{html.escape(shop.preferences_url)}">choose your e-mails here</a>.</p>',
        status_code=400,
    )


def _page(shop: Shop, title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)} · {html.escape(shop.name)}</title></head>"
        "<body style='font-family: sans-serif; max-width: 32rem; margin: 4rem auto'>"
        f"<h1>{html.escape(title)}</h1>{body}"
        f'<p><a href="{html.escape(shop.preferences_url)}">Choose which e-mails you get</a>'
        f" · {html.escape(shop.postal_address)}</p></body></html>",
        status_code=status_code,
        # Neither page may be cached or indexed: each is one customer's.
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )
