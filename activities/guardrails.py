"""When a marketing e-mail may go: suppression, frequency cap with priority, quiet hours.

The send activity asks :func:`hold` inside the transaction that then marks the e-mail
``attempting``, after :func:`lock_customer`: two journeys of one customer can never
both pass the cap. A held e-mail stays ``pending`` in the ledger with ``not_before``;
that row is also how a competing journey of lower priority knows to step aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from triggermail.journeys import Guardrails, QuietHours
from triggermail.store import Customer, EmailSend, Suppression

WEEK = timedelta(days=7)
COUNTED = ("attempting", "sent", "unknown")
"""Ledger states that may have reached the inbox: all count against the cap."""
YIELD_STEP = timedelta(minutes=1)
"""How long a lower-priority e-mail steps aside when only the weekly limit is in play."""
ABANDONED_AFTER = timedelta(hours=1)
"""A held e-mail whose journey has not come back this long after its time has ended
(purchase, cancel): it no longer holds its place in the queue."""


@dataclass(frozen=True)
class Hold:
    """Not before ``until``, because of ``reason`` (``frequency_cap`` or ``quiet_hours``)."""

    until: datetime
    reason: str


def lock_customer(session: Session, customer_id: str) -> Customer | None:
    """Serialise the sends of one customer until the transaction ends; the customer's row
    (None when there is none), read by the same statement.

    A no-op UPDATE: a row lock on PostgreSQL (a non-key column, so it does not block
    inserts that reference the customer), the database write lock on SQLite. Its
    ``RETURNING`` hands the row back as the lock holds it, one round trip instead of two.
    """
    return session.scalars(
        update(Customer)
        .where(Customer.id == customer_id)
        .values(marketing_consent=Customer.marketing_consent, updated_at=Customer.updated_at)
        .returning(Customer),
        execution_options={"synchronize_session": False},
    ).first()


def suppressions_of(customer: Customer) -> Select[Suppression]:
    """The suppression rows that apply to a customer: theirs, or their current address's."""
    matches = [Suppression.customer_id == customer.id]
    if customer.email:
        matches.append(Suppression.email == customer.email.lower())
    return select(Suppression).where(or_(*matches)).order_by(Suppression.id)


def suppression(session: Session, customer: Customer) -> str | None:
    """Why the customer or their address is on the suppression list; None when not."""
    first = session.scalars(suppressions_of(customer).limit(1)).first()
    return first.reason if first else None


def quiet_end(moment: datetime, quiet: QuietHours, timezone: ZoneInfo) -> datetime | None:
    """When the quiet window ``moment`` falls in ends (UTC); None outside the window.

    The end is a wall-clock time on a local date, so it stays 09:00 local across a DST
    change, whatever the UTC offset did overnight.
    """
    local = moment.astimezone(timezone)
    now = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside, end_date = quiet.start <= now < quiet.end, local.date()
    else:
        inside = now >= quiet.start or now < quiet.end
        end_date = local.date() + timedelta(days=1) if now >= quiet.start else local.date()
    if not inside:
        return None
    end = datetime.combine(end_date, quiet.end).replace(tzinfo=timezone).astimezone(UTC)
    return max(end, moment + timedelta(seconds=1))


def hold(
    session: Session,
    *,
    guardrails: Guardrails,
    customer: Customer,
    row: EmailSend,
    now: datetime,
    zone: ZoneInfo,
) -> Hold | None:
    """When ``row`` may go, if not now.

    1. Cap: ``min_hours_between`` after the customer's last marketing e-mail, and no more
       than ``max_per_week`` in any 7 days.
    2. Priority: an e-mail of another journey already held and due now, of higher
       priority (or equal and waiting longer), goes first; this one steps aside.
    3. Quiet hours: a moment inside the window moves to its end, in the customer's
       ``zone`` (:func:`triggermail.localtime.customer_zone`).
    """
    if guardrails.is_exempt(row.journey):
        return None
    gap = timedelta(hours=guardrails.min_hours_between)
    limit = guardrails.max_per_week
    # With no cap configured the customer's earlier e-mails change nothing: not read.
    earlier = _earlier_sends(session, guardrails, customer, row, now) if gap or limit else []
    until, reason = now, "frequency_cap"
    if gap and earlier:
        until = max(until, earlier[-1] + gap)
    if limit and len(earlier) >= limit:
        until = max(until, earlier[-limit] + WEEK)

    capped = bool(gap) or bool(limit and len(earlier) + 1 >= limit)
    if until <= now and capped and _outranked(session, guardrails, row, now):
        until = now + max(gap, YIELD_STEP)

    if guardrails.quiet_hours is not None:
        end = quiet_end(until, guardrails.quiet_hours, zone)
        if end is not None:
            reason = "quiet_hours" if until <= now else reason
            until = end
    return Hold(until, reason) if until > now else None


def _earlier_sends(
    session: Session, guardrails: Guardrails, customer: Customer, row: EmailSend, now: datetime
) -> list[datetime]:
    """When the customer's other capped e-mails of the past week went (or may have), oldest
    first."""
    counted_at = func.coalesce(EmailSend.attempted_at, EmailSend.sent_at)
    exempt = guardrails.exempt or [""]
    return sorted(
        at
        for at in session.scalars(
            select(counted_at).where(
                EmailSend.customer_id == customer.id,
                EmailSend.id != row.id,
                EmailSend.status.in_(COUNTED),
                EmailSend.journey.not_in(exempt),
                counted_at > now - WEEK,
            )
        )
        if at is not None
    )


def _outranked(session: Session, guardrails: Guardrails, row: EmailSend, now: datetime) -> bool:
    """Whether a held e-mail of another journey of this customer should go before ``row``."""
    mine = guardrails.priority_of(row.journey)
    waiting_since = row.due_at or now
    for journey, due_at in session.execute(
        select(EmailSend.journey, EmailSend.due_at).where(
            EmailSend.customer_id == row.customer_id,
            EmailSend.id != row.id,
            EmailSend.workflow_id != row.workflow_id,
            EmailSend.status == "pending",
            EmailSend.not_before <= now,
            EmailSend.not_before > now - ABANDONED_AFTER,
        )
    ):
        if guardrails.is_exempt(journey):
            continue
        theirs = guardrails.priority_of(journey)
        if theirs > mine or (theirs == mine and due_at is not None and due_at < waiting_since):
            return True
    return False
