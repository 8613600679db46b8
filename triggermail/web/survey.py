"""The reactivation survey's answer links: one click answers "why did you stop buying?".

``GET /survey/{token}/{answer}`` records the answer on the customer card and thanks the
customer. Unlike the unsubscribe page there is no confirm button: the question is the
e-mail and the click is the answer — a second page would lose most answers — and nothing
here can hurt the customer. A mail scanner that fetches the links may record an answer
nobody gave; the customer's own click, later, overwrites it (one answer per e-mail, the
latest wins), and the card keeps only the answer, never a consequence. The token is the
e-mail's id signed for surveys (``triggermail.links``): an unsubscribe token does not
answer, a survey token does not unsubscribe.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from activities.lapsed import SURVEY_ANSWERS
from triggermail.links import SecretMissing, UnsubscribeLinks, signing_secret
from triggermail.settings import Settings
from triggermail.store import EmailSend, SurveyAnswer
from triggermail.web.unsubscribe import Token, _page, _shop

log = logging.getLogger("triggermail.web.survey")

Answer = Literal["price", "quality", "delivery", "checkout", "other"]
assert set(Answer.__args__) == set(SURVEY_ANSWERS)  # type: ignore[attr-defined]
THANKS = {
    "price": "prices",
    "quality": "quality",
    "delivery": "delivery",
    "checkout": "checkout",
    "other": "something else",
}


def survey_router(settings: Settings, *, clock: Callable[[], datetime]) -> APIRouter:
    """The survey's answer page; it reads the store and shop from ``app.state``."""
    try:
        links: UnsubscribeLinks | None = UnsubscribeLinks(
            secret=signing_secret(settings), public_url=settings.public_url
        )
    except SecretMissing as err:
        log.error("survey links cannot be checked: %s", err)
        links = None
    router = APIRouter(tags=["survey"])

    @router.get(
        "/survey/{token}/{answer}",
        response_class=HTMLResponse,
        summary="Record a reactivation survey's answer (the latest click wins) and thank",
        responses={400: {"description": "Not a link we sent: nothing is recorded."}},
    )
    async def answer(
        request: Request,
        token: Token,
        answer: Annotated[Answer, Path(description="Why the customer stopped buying.")],
    ) -> HTMLResponse:
        shop = _shop(request)
        send_id = links.verify_survey(token) if links else None
        recorded = (
            await asyncio.to_thread(
                record_answer, request.app.state.sessions, send_id, answer, clock()
            )
            if send_id
            else False
        )
        if not recorded:
            return _page(
                shop,
                "This link is not valid",
                "<p>This link is broken or was changed, so nothing was recorded.</p>",
                status_code=400,
            )
        return _page(
            shop,
            "Thank you",
            f"<p>You told us it was {html.escape(THANKS[answer])}. It helps "
            f"{html.escape(shop.name)} do better. Changed your mind? Choose another "
            "answer in the e-mail.</p>"
            f'<p><a href="{html.escape(shop.url)}">Visit {html.escape(shop.name)}</a></p>',
        )

    return router


def record_answer(sessions: sessionmaker[Session], send_id: str, answer: str, at: datetime) -> bool:
    """Record (or change) the answer to the e-mail ``send_id``; False for no such e-mail."""
    with sessions() as session:
        customer_id = session.scalar(
            select(EmailSend.customer_id).where(
                EmailSend.id == send_id, EmailSend.journey == "reactivation"
            )
        )
        if customer_id is None:
            return False
        for _ in range(2):  # two clicks at once: the second finds the first's row
            row = session.scalar(select(SurveyAnswer).where(SurveyAnswer.send_id == send_id))
            if row is None:
                row = SurveyAnswer(customer_id=customer_id, send_id=send_id, answer=answer)
                session.add(row)
            row.answer, row.answered_at = answer, at
            try:
                session.commit()
                return True
            except IntegrityError:
                session.rollback()
        return False
