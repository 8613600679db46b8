"""Lapsed customers: the segment's offer, what reactivation and win-back e-mails say, sunset.

The send activity asks :func:`with_segment_offer` for the step as this customer gets it
and :func:`lapsed_content` for the template's ``lapsed`` key. :class:`LapsedActivities`
decides, after a win-back's farewell, whether the customer reacted at all; one who did
not is sunset: suppressed with reason ``sunset`` so no marketing journey mails them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.guardrails import lock_customer
from triggermail.journey_tables import Reactivation, WinBack
from triggermail.journeys import JourneysConfig
from triggermail.store import EmailEvent, EmailSend, Order, Suppression, utcnow
from workflows import registry
from workflows.types import (
    SUNSET_ACTIVITY,
    SUNSET_AFTER_ACTIVITY,
    SendEmailInput,
    SunsetInput,
    SunsetResult,
)

LAPSED_JOURNEYS = registry.about("lapse")
SURVEY_ANSWERS = ("price", "quality", "delivery", "checkout", "other")
"""Why a customer stopped buying, as the reactivation survey asks it; stored as is."""
REACTIONS = ("open", "click")
"""SendGrid events that show a customer still reads the shop's e-mails."""
SENT = ("sent", "unknown")


def _config(journeys: JourneysConfig, journey: str) -> Reactivation | WinBack | None:
    if journey == "reactivation":
        return journeys.reactivation
    if journey == "win_back":
        return journeys.win_back
    return None


def with_segment_offer(journeys: JourneysConfig, request: SendEmailInput) -> SendEmailInput:
    """The request with its step's offer as the customer's segment gets it
    (:meth:`triggermail.journey_tables.LapsedJourney.offered`), for journeys entered before
    offers were pinned at entry; a pinned step is the offer already."""
    config = _config(journeys, request.journey)
    if config is None or request.step.pinned:
        return request
    return replace(request, step=config.offered(request.step, request.segment))


def lapsed_content(journeys: JourneysConfig, request: SendEmailInput) -> dict[str, Any] | None:
    """The template key ``lapsed``: ``segment``, ``phase``, ``free_shipping``,
    ``value_points`` (the value phase) and ``survey`` (the answers a survey offers, each
    with its link once the e-mail has an id); None for other journeys."""
    config = _config(journeys, request.journey)
    if config is None:
        return None
    step = request.step
    if step.pinned:
        asks, points = step.survey, list(step.value_points)
    else:  # entered before December 2026: as the config says now
        asks = isinstance(config, Reactivation) and config.ask == "survey"
        points = (
            list(config.value_points)
            if isinstance(config, WinBack) and step.phase == "value"
            else []
        )
    return {
        "segment": request.segment,
        "phase": step.phase,
        "free_shipping": step.free_shipping,
        "value_points": points,
        "survey": [{"answer": answer, "url": None} for answer in SURVEY_ANSWERS] if asks else [],
    }


def reacted(session: Session, *, customer_id: str, workflow_id: str, since: datetime) -> str | None:
    """How the customer reacted to a journey's e-mails: ``order``, ``click`` or ``open``;
    None for not at all. Indexed: the customer's sends, then their events by send id."""
    ordered = session.scalar(
        select(Order.id)
        .where(
            Order.customer_id == customer_id,
            Order.placed_at >= since,
            Order.status == "completed",
        )
        .limit(1)
    )
    if ordered is not None:
        return "order"
    # The journey's own e-mails (its ID names one lapse), through the customer's index.
    sends = select(EmailSend.id).where(
        EmailSend.customer_id == customer_id, EmailSend.workflow_id == workflow_id
    )
    events = set(
        session.scalars(
            select(EmailEvent.event)
            .where(EmailEvent.send_id.in_(sends), EmailEvent.event.in_(REACTIONS))
            .distinct()
        )
    )
    return next((event for event in ("click", "open") if event in events), None)


@dataclass
class LapsedActivities:
    """Activities of the lapsed-customer journeys; ``worker.py`` hands in the dependencies."""

    session_factory: sessionmaker[Session]
    journeys: JourneysConfig
    clock: Callable[[], datetime] = field(default=utcnow)

    @activity.defn(name=SUNSET_AFTER_ACTIVITY)
    def sunset_after(self) -> float:
        """Seconds of grace after a win-back's last farewell (``[win_back] sunset_after``),
        read when the farewell has gone: for win-backs entered before the grace was
        pinned in their spec (``JourneySpec.sunset_after_s``)."""
        config = self.journeys.win_back
        return (config.sunset_after if config else timedelta(days=7)).total_seconds()

    @activity.defn(name=SUNSET_ACTIVITY)
    def sunset(self, request: SunsetInput) -> SunsetResult:
        """Sunset the customer unless they reacted to the journey since it started.

        Idempotent: a retry finds the suppression it wrote, and a customer already
        suppressed (unsubscribed on the farewell's link…) is left as they are.
        """
        with self.session_factory() as session:
            lock_customer(session, request.customer_id)
            reaction = reacted(
                session,
                customer_id=request.customer_id,
                workflow_id=request.workflow_id,
                since=request.entered_at,
            )
            if reaction is not None:
                return SunsetResult(sunset=False, reason=reaction)
            existing = session.scalar(
                select(Suppression.reason)
                .where(Suppression.customer_id == request.customer_id)
                .order_by(Suppression.id)
                .limit(1)
            )
            if existing is not None:
                return SunsetResult(sunset=existing == "sunset", reason=existing)
            session.add(
                Suppression(
                    customer_id=request.customer_id,
                    reason="sunset",
                    source=request.journey,
                    send_id=request.send_id,
                    created_at=self.clock(),
                )
            )
            session.commit()
            activity.logger.info("customer sunset after %s", request.workflow_id)
            return SunsetResult(sunset=True, reason="no_reaction")
