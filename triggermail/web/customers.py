"""``GET /v1/customers/{id}``: the customer card, for operators holding the admin key.

The card itself is assembled in :mod:`triggermail.web.customer_card` (the CLI shows the same
one); this is its route and the admin key's check, apart from the app's assembly
(``api.py``), which mounts this router beside the others.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from sqlalchemy.exc import DBAPIError

from triggermail.web.customer_card import CustomerCard, load_card
from triggermail.web.errors import Problem, Refused, request_id, unauthorized, unavailable

# The API's one log, as before its routers had files of their own: filters name it.
log = logging.getLogger("triggermail.web.api")

_admin_basic = HTTPBasic(
    auto_error=False, scheme_name="AdminBasic", description="User name: the admin key."
)
_admin_bearer = HTTPBearer(
    auto_error=False, scheme_name="AdminBearer", description="Token: the admin key."
)


def customers_router(*, admin_key: bytes | None) -> APIRouter:
    """The customer card's route; it reads the store, Temporal client and clock from
    ``app.state``."""
    router = APIRouter()

    def need_admin_key(
        basic: Annotated[HTTPBasicCredentials | None, Depends(_admin_basic)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
    ) -> None:
        if admin_key is None:
            raise unauthorized("the customer card is off: set TRIGGERMAIL_ADMIN_KEY")
        given = basic.username if basic else bearer.credentials if bearer else None
        if given is None:
            raise unauthorized("send the admin key as a Bearer token or Basic auth user name")
        if not hmac.compare_digest(given.encode(), admin_key):
            raise unauthorized("wrong admin key")

    @router.get(
        "/v1/customers/{customer_id}",
        response_model=CustomerCard,
        responses={
            401: {"model": Problem, "description": "No admin key, or a wrong one."},
            404: {"model": Problem, "description": "No such customer."},
            503: {"model": Problem, "description": "Store unreachable."},
        },
        dependencies=[Depends(need_admin_key)],
        summary="The customer card: profile, consent, events, e-mails, running journeys",
        tags=["customers"],
    )
    async def customer(
        customer_id: str,
        request: Request,
        response: Response,
        events: Annotated[int, Query(ge=1, le=1000, description="Newest events to show.")] = 100,
    ) -> CustomerCard:
        try:
            card = await load_card(
                customer_id,
                session_factory=request.app.state.sessions,
                client=request.app.state.temporal,
                events=events,
                clock=request.app.state.clock,
            )
        except DBAPIError as err:
            log.warning("request %s: customer card: store unavailable: %s", request_id.get(), err)
            raise Refused(503, "unavailable", unavailable()) from err
        if card is None:
            raise Refused(404, "not_found", f"no customer {customer_id!r}")
        # One customer's personal data: no cache or proxy may keep it.
        response.headers["Cache-Control"] = "no-store"
        return card

    return router
