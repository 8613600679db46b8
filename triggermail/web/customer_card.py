"""The customer card: everything one customer did and got, and the journeys running for them.

One assembly serves ``GET /v1/customers/{id}`` and ``triggermail customer ID``: the
profile and consent, the events timeline (when each happened and when we received
it), every e-mail with its journey, step and status, and the journeys Temporal is
running now, found through the deterministic workflow IDs in ``triggermail.ids``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Group
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.guardrails import suppressions_of
from starter.starting import journey_ids
from triggermail.store import Customer, EmailSend, Event, Identity, SurveyAnswer, utcnow
from workflows.registry import customer_journey_ids
from workflows.types import JourneyStatus

RPC_TIMEOUT = timedelta(seconds=5)
QUERY_TIMEOUT = timedelta(seconds=2)
"""A query waits for a worker; without one polling, the card shows what describe knows."""


class Profile(BaseModel):
    id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    locale: str | None
    timezone: str | None
    traits: dict[str, Any]
    anonymous_ids: list[str] = Field(description="Devices and browsers linked to the customer.")
    created_at: datetime
    updated_at: datetime


class Suppressed(BaseModel):
    reason: str = Field(description="unsubscribed, bounced, dropped, spamreport or sunset.")
    source: str = Field(description="link (our unsubscribe page) or sendgrid (its webhook).")
    email: str | None = Field(description="The address it applies to; None: the customer.")
    created_at: datetime


class Consent(BaseModel):
    marketing: bool = Field(description="Marketing e-mail allowed (identify trait).")
    suppressed: list[Suppressed] = Field(
        default_factory=list,
        description="Why marketing e-mail will not reach them even with consent; oldest first.",
    )


class TimelineEvent(BaseModel):
    message_id: str
    type: str
    event: str | None
    timestamp: datetime = Field(description="When it happened at the shop.")
    received_at: datetime = Field(description="When triggermail received it.")
    user_id: str | None
    anonymous_id: str | None
    data: dict[str, Any] = Field(description="The call's properties (track) or traits.")


class SentEmail(BaseModel):
    id: str
    journey: str
    step: str
    variant: str
    status: str = Field(description="pending, attempting, sent, failed, unknown or skipped.")
    reason: str | None
    subject: str | None
    to_email: str | None
    coupon_code: str | None
    workflow_id: str
    created_at: datetime
    sent_at: datetime | None


class SurveyReply(BaseModel):
    answer: str = Field(description="price, quality, delivery, checkout or other.")
    send_id: str = Field(description="The reactivation e-mail it answers.")
    answered_at: datetime


class RunningJourney(BaseModel):
    journey: str
    workflow_id: str
    run_id: str | None
    started_at: datetime | None
    state: str | None = Field(description="waiting or sending; None when no worker answered.")
    next_step: str | None
    next_send_at: datetime | None
    sent: list[str]


class CustomerCard(BaseModel):
    profile: Profile
    consent: Consent
    events: list[TimelineEvent] = Field(description="Newest first.")
    emails: list[SentEmail] = Field(description="Newest first.")
    survey: list[SurveyReply] = Field(
        default_factory=list,
        description="Why they stopped buying (reactivation survey), newest first.",
    )
    journeys: list[RunningJourney] | None = Field(
        description="Running now; None when Temporal could not be asked."
    )
    journeys_error: str | None = None


async def load_card(
    customer_id: str,
    *,
    session_factory: sessionmaker[Session],
    client: Client | None,
    events: int = 100,
    clock: Callable[[], datetime] = utcnow,
) -> CustomerCard | None:
    """The card of ``customer_id``, or None when the store has no such customer.

    The store's part is always there; the running journeys are None (with the reason)
    when Temporal is unreachable or ``client`` is None. ``clock`` dates the look for
    journeys that may still run.

    Raises:
        sqlalchemy.exc.DBAPIError: the store is unreachable.
    """
    stored = await asyncio.to_thread(_from_store, session_factory, customer_id, events)
    if stored is None:
        return None
    journeys: list[RunningJourney] | None = None
    error: str | None = "no Temporal connection"
    if client is not None:
        try:
            ids = await asyncio.to_thread(journey_ids, session_factory, customer_id, clock())
            journeys = await running_journeys(client, customer_id, ids)
            error = None
        except RPCError as err:
            error = f"Temporal unavailable: {err.message}"
    return stored.model_copy(update={"journeys": journeys, "journeys_error": error})


async def running_journeys(
    client: Client, customer_id: str, ids: dict[str, list[str]] | None = None
) -> list[RunningJourney]:
    """The customer's journeys that are running now, with their next step when a worker answers.

    ``ids``: where to look, by journey (``starter.starting.journeys_of``); the
    one-per-customer journeys when None.

    Raises:
        RPCError: Temporal is unreachable.
    """
    if ids is None:
        ids = {name: [wid] for name, wid in customer_journey_ids(customer_id).items()}
    found = await asyncio.gather(
        *(
            _running(client, journey, workflow_id)
            for journey, workflow_ids in ids.items()
            for workflow_id in workflow_ids
        )
    )
    return [journey for journey in found if journey is not None]


async def _running(client: Client, journey: str, workflow_id: str) -> RunningJourney | None:
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    status: JourneyStatus | None = None
    # Without a worker polling there is no answer: the card still says the journey runs.
    with contextlib.suppress(RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        status = await handle.query("status", result_type=JourneyStatus, rpc_timeout=QUERY_TIMEOUT)
    return RunningJourney(
        journey=journey,
        workflow_id=workflow_id,
        run_id=description.run_id,
        started_at=description.start_time,
        state=status.state if status else None,
        next_step=status.next_step if status else None,
        next_send_at=status.next_send_at if status else None,
        sent=list(status.sent) if status else [],
    )


def _from_store(
    session_factory: sessionmaker[Session], customer_id: str, events: int
) -> CustomerCard | None:
    with session_factory() as session:
        customer = session.get(Customer, customer_id)
        if customer is None:
            return None
        anonymous_ids = session.scalars(
            select(Identity.anonymous_id)
            .where(Identity.customer_id == customer_id)
            .order_by(Identity.linked_at)
        )
        timeline = session.scalars(
            select(Event)
            .where(Event.customer_id == customer_id)
            .order_by(Event.timestamp.desc(), Event.id.desc())
            .limit(events)
        )
        emails = session.scalars(
            select(EmailSend)
            .where(EmailSend.customer_id == customer_id)
            .order_by(EmailSend.created_at.desc())
        )
        answers = session.scalars(
            select(SurveyAnswer)
            .where(SurveyAnswer.customer_id == customer_id)
            .order_by(SurveyAnswer.answered_at.desc())
        )
        return CustomerCard(
            profile=Profile(
                id=customer.id,
                email=customer.email,
                first_name=customer.first_name,
                last_name=customer.last_name,
                locale=customer.locale,
                timezone=customer.timezone,
                traits=customer.traits or {},
                anonymous_ids=list(anonymous_ids),
                created_at=customer.created_at,
                updated_at=customer.updated_at,
            ),
            consent=Consent(
                marketing=customer.marketing_consent,
                suppressed=[
                    Suppressed(
                        reason=row.reason,
                        source=row.source,
                        email=row.email,
                        created_at=row.created_at,
                    )
                    for row in session.scalars(suppressions_of(customer))
                ],
            ),
            events=[
                TimelineEvent(
                    message_id=row.message_id,
                    type=row.type,
                    event=row.event,
                    timestamp=row.timestamp,
                    received_at=row.received_at,
                    user_id=row.user_id,
                    anonymous_id=row.anonymous_id,
                    data=_data(row.payload),
                )
                for row in timeline
            ],
            emails=[
                SentEmail(
                    id=row.id,
                    journey=row.journey,
                    step=row.step,
                    variant=row.variant,
                    status=row.status,
                    reason=row.reason,
                    subject=row.subject,
                    to_email=row.to_email,
                    coupon_code=row.coupon_code,
                    workflow_id=row.workflow_id,
                    created_at=row.created_at,
                    sent_at=row.sent_at,
                )
                for row in emails
            ],
            survey=[
                SurveyReply(answer=row.answer, send_id=row.send_id, answered_at=row.answered_at)
                for row in answers
            ],
            journeys=None,
        )


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    """What a call said: a track's properties, an identify's traits (RudderStack's SDKs send
    those in ``context.traits``)."""
    context = payload.get("context")
    shared = context.get("traits") if isinstance(context, dict) else None
    for found in (payload.get("properties"), payload.get("traits"), shared):
        if isinstance(found, dict) and found:
            return found
    return {}


def card_renderable(card: CustomerCard) -> Group:
    """The card as rich tables, for ``triggermail customer``."""
    profile = card.profile
    about = Table.grid(padding=(0, 2))
    about.add_column(style="bold")
    about.add_column()
    name = " ".join(part for part in (profile.first_name, profile.last_name) if part)
    about.add_row("customer", f"{profile.id}  {name}".rstrip())
    about.add_row("e-mail", profile.email or "—")
    about.add_row("marketing consent", "yes" if card.consent.marketing else "no")
    for entry in card.consent.suppressed:
        where = f" ({entry.email})" if entry.email else ""
        about.add_row(
            "suppressed",
            f"{entry.reason}{where} via {entry.source}, {entry.created_at:%Y-%m-%d %H:%M} UTC",
        )
    for reply in card.survey:
        about.add_row("stopped buying", f"{reply.answer}, {reply.answered_at:%Y-%m-%d %H:%M} UTC")
    about.add_row("locale / timezone", f"{profile.locale or '—'} / {profile.timezone or '—'}")
    if profile.anonymous_ids:
        about.add_row("linked devices", ", ".join(profile.anonymous_ids))
    shown = {"locale", "timezone", "marketing_consent"}
    extra = {k: v for k, v in profile.traits.items() if k not in shown}
    if extra:
        about.add_row("traits", ", ".join(f"{k}={v}" for k, v in extra.items()))

    journeys = Table(title="Journeys running now", title_justify="left")
    journeys.add_column("workflow ID", no_wrap=True)
    for column in ("state", "next step"):
        journeys.add_column(column)
    journeys.add_column("next send", no_wrap=True)
    journeys.add_column("sent")
    if card.journeys is None:
        journeys.caption = card.journeys_error
    for journey in card.journeys or []:
        journeys.add_row(
            journey.workflow_id,
            journey.state or "running",
            journey.next_step or "—",
            _when(journey.next_send_at),
            ", ".join(journey.sent) or "—",
        )

    emails = Table(title="E-mails", title_justify="left")
    emails.add_column("created", no_wrap=True)
    for column in ("journey", "step", "variant", "status", "subject"):
        emails.add_column(column)
    for email in card.emails:
        status = email.status + (f" ({email.reason})" if email.reason else "")
        emails.add_row(
            _when(email.created_at),
            email.journey,
            email.step,
            email.variant,
            status,
            email.subject or "—",
        )

    events = Table(title="Events (newest first)", title_justify="left")
    events.add_column("happened", no_wrap=True)
    events.add_column("received", no_wrap=True)
    for column in ("type", "event", "details"):
        events.add_column(column)
    for event in card.events:
        events.add_row(
            _when(event.timestamp),
            _when(event.received_at),
            event.type,
            event.event or "—",
            _summary(event.data),
        )
    return Group(about, "", journeys, "", emails, "", events)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _summary(data: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in data.items() if not isinstance(v, dict | list)]
    text = ", ".join(parts)
    return text if len(text) <= 60 else text[:59] + "…"
