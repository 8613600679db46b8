"""A hand-built store: customers, ledger rows, SendGrid events, orders and carts at set times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from triggermail.store import Cart, Customer, EmailEvent, EmailSend, Order, Suppression

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
"""The start of the period the tests report on."""
WORKFLOW_IDS = {
    "abandoned_cart": "abandoned-cart/{customer}",
    "welcome": "welcome/{customer}",
    "post_purchase": "post-purchase/{entry}",
}
_events = count(1)


def at(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


class Store:
    """Adds rows to a session the way the intake, the send activity and the webhook would."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.customers: set[str] = set()

    def customer(self, customer_id: str) -> None:
        if customer_id not in self.customers:
            self.customers.add(customer_id)
            self.session.add(Customer(id=customer_id, email=f"{customer_id}@example.com"))
            self.session.flush()

    def send(
        self,
        customer_id: str,
        step: str,
        when: datetime,
        *,
        journey: str = "abandoned_cart",
        entry: str | None = None,
        variant: str = "control",
        status: str = "sent",
        reason: str | None = None,
        created_at: datetime | None = None,
        due: bool = True,
    ) -> str:
        """A ledger row asked for at ``when`` (its ``due_at``; ``due=False``: a row from before
        the column, timed by ``created_at``); ``entry`` names the journey entry (default: one
        per customer)."""
        self.customer(customer_id)
        entry = entry or f"msg-{customer_id}"
        workflow_id = WORKFLOW_IDS[journey].format(customer=customer_id, entry=entry)
        row = EmailSend(
            idempotency_key=f"{workflow_id}/{entry}/{step}",
            customer_id=customer_id,
            journey=journey,
            step=step,
            variant=variant,
            workflow_id=workflow_id,
            template=f"{journey}/{step}",
            status=status,
            reason=reason,
            created_at=created_at or when,
            due_at=when if due else None,
            sent_at=when if status == "sent" else None,
            attempted_at=when if status == "sent" else None,
        )
        self.session.add(row)
        self.session.flush()
        return row.id

    def event(self, send_id: str, kind: str, when: datetime) -> None:
        self.session.add(
            EmailEvent(
                provider_event_id=f"sg-{next(_events)}",
                send_id=send_id,
                event=kind,
                occurred_at=when,
                payload={"event": kind},
            )
        )

    def order(
        self,
        customer_id: str,
        when: datetime,
        *,
        revenue: str | None = None,
        total: str | None = None,
        currency: str = "EUR",
        status: str = "completed",
        order_id: str | None = None,
    ) -> str:
        self.customer(customer_id)
        order = Order(
            id=order_id or f"o-{next(_events)}",
            customer_id=customer_id,
            status=status,
            revenue=Decimal(revenue) if revenue is not None else None,
            total=Decimal(total) if total is not None else None,
            currency=currency,
            placed_at=when,
        )
        self.session.add(order)
        self.session.flush()
        return order.id

    def cart(self, customer_id: str, cart_id: str, last_activity: datetime, status: str) -> None:
        self.customer(customer_id)
        self.session.add(
            Cart(id=cart_id, customer_id=customer_id, status=status, last_activity_at=last_activity)
        )

    def unsubscribe(self, customer_id: str, send_id: str, when: datetime) -> None:
        self.session.add(
            Suppression(
                customer_id=customer_id,
                email=f"{customer_id}@example.com",
                reason="unsubscribed",
                source="link",
                send_id=send_id,
                created_at=when,
            )
        )


def rows(report: Any, journey: str) -> dict[tuple[str | None, str | None], Any]:
    """A journey's report rows by (step, variant); the journey's own under (None, None)."""
    found = next(j for j in report.journeys if j.journey == journey)
    out = {(row.step, row.variant): row for row in found.steps}
    out[(None, None)] = found.total
    if found.holdout is not None:
        out[(None, "holdout")] = found.holdout
    return out
