"""One-click unsubscribe (RFC 8058): the pages behind every marketing e-mail's link.

``GET /unsubscribe/{token}`` only shows a page with a button: mail scanners and link
previews fetch links, and a fetch must never unsubscribe anyone. ``POST`` to the same
URL — the button, or a mail client's one-click ``List-Unsubscribe=One-Click`` — puts
the customer on the suppression list at once and ends every running journey of theirs.
A forged, altered or cut token changes nothing and gets a 400 page.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starter.routing import journey_ids
from triggermail.journeys import Shop
from triggermail.links import SecretMissing, UnsubscribeLinks, signing_secret
from triggermail.settings import Settings
from triggermail.store import EmailSend, Suppression
from workflows.journey import Journey
from workflows.registry import customer_journey_ids
from workflows.types import JourneyExit

log = logging.getLogger("triggermail.web.unsubscribe")

SIGNAL_TIMEOUT = timedelta(seconds=5)
"""The customer (or SendGrid) waits for the answer; the suppression is already stored."""

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
    async def unsubscribe(request: Request, token: Token) -> HTMLResponse:
        shop = _shop(request)
        found = await asyncio.to_thread(customer_of, request, token)
        if found is None:
            return _invalid(shop)
        send_id, customer_id = found
        now = clock()
        await asyncio.to_thread(_suppress, request.app.state.sessions, customer_id, send_id, now)
        await end_journeys(
            request.app.state.temporal, customer_id, now, sessions=request.app.state.sessions
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
) -> None:
    """Signal every journey of the customer to end; the suppression already stops any send.

    With ``sessions``, the journeys of the customer's orders and products too (found from
    the store); without, the one-per-customer journeys.
    """
    ids = (
        await asyncio.to_thread(journey_ids, sessions, customer_id, at)
        if sessions is not None
        else {name: [wid] for name, wid in customer_journey_ids(customer_id).items()}
    )
    for workflow_id in [wid for wids in ids.values() for wid in wids]:
        try:
            await client.get_workflow_handle(workflow_id).signal(
                Journey.exit, JourneyExit(reason="unsubscribed", at=at), rpc_timeout=SIGNAL_TIMEOUT
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                # The send activity's suppression check still stops every e-mail.
                log.warning("could not end %s after an unsubscribe: %s", workflow_id, err.message)


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
