"""Which e-mail earned an order: last click, else last open, within the configured windows.

The rules (``[attribution]`` in the journeys TOML):

1. An order is credited to the e-mail the customer **clicked** last within ``click_window``
   (default 5 days) before placing it — the click's time decides, not the e-mail's.
2. Failing a click, to the e-mail they **opened** last within ``open_window`` (default
   1 day); with ``open_tracking = false`` (SendGrid's open tracking off), to the e-mail
   **received** last in that window: its ``delivered`` event, else the ledger's ``sent_at``.
3. Nothing within either window: the order is not attributed (it is the shop's own).

Both ends of a window count (an order exactly 5 days after a click is credited). Only
completed orders earn: a refunded or cancelled order is revenue of no e-mail, and an order
refunded after a report was run drops out of the next one. The order's ``revenue``
(Segment's net figure) is credited, else its ``total``, in the order's own currency —
currencies are never added together. Guest orders not yet tied to a customer cannot be
attributed.

Everything is read from the store: the ledger (``email_sends``), SendGrid's webhook events
(``email_events``) and the orders, through the indexes ``ix_orders_placed``,
``ix_email_sends_customer`` (its ``customer_id`` prefix) and ``ix_email_events_send``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from triggermail.journeys import Attribution
from triggermail.store import EmailEvent, EmailSend, Order

Rule = Literal["click", "open", "received"]
MAILED = ("sent", "unknown")
"""Ledger states of an e-mail that may have reached the customer; a webhook event about
one proves it did."""
SEND_REACH = timedelta(days=60)
"""How old an e-mail may be when its click or open is credited: older ones are not read
(a bound on the query, far beyond any sensible window)."""
CHUNK = 500
"""Ids per ``IN (…)`` list: well inside every backend's limit on bound parameters."""

_T = TypeVar("_T")


def asked_between(start: datetime, end: datetime) -> ColumnElement[bool]:
    """Ledger rows the journey asked for in ``[start, end]``: by ``due_at``, the journey's
    own clock (``created_at`` is the database's, and rows from before ``due_at`` have only
    that). ``ix_email_sends_due_at`` serves it."""
    return or_(
        EmailSend.due_at.between(start, end),
        and_(EmailSend.due_at.is_(None), EmailSend.created_at.between(start, end)),
    )


@dataclass(frozen=True)
class Touch:
    """A moment an e-mail reached the customer: clicked, opened or received."""

    send_id: str
    journey: str
    step: str
    variant: str
    rule: Rule
    at: datetime


@dataclass(frozen=True)
class Attributed:
    """An order and the e-mail credited with it."""

    order_id: str
    customer_id: str
    placed_at: datetime
    revenue: Decimal
    currency: str
    send_id: str
    journey: str
    step: str
    variant: str
    rule: Rule
    """Which rule credited it: ``click``, ``open`` or ``received``."""
    touch_at: datetime
    """When the credited click, open or receipt happened."""


class _Priced(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def revenue(self) -> Decimal | None: ...
    @property
    def total(self) -> Decimal | None: ...


def order_value(order: _Priced) -> Decimal:
    """What an order is worth to the shop: its revenue, else its total; nothing when neither
    is known, or when it was refunded or cancelled."""
    if order.status != "completed":
        return Decimal(0)
    value = order.revenue if order.revenue is not None else order.total
    return Decimal(value) if value is not None else Decimal(0)


def credit(placed_at: datetime, touches: Iterable[Touch], rules: Attribution) -> Touch | None:
    """The touch an order placed at ``placed_at`` is credited to, by the rules above."""
    clicks, opens = [], []
    received_counts = not rules.open_tracking
    for touch in touches:
        if touch.at > placed_at:
            continue
        age = placed_at - touch.at
        if touch.rule == "click" and age <= rules.click_window:
            clicks.append(touch)
        elif age <= rules.open_window and (
            touch.rule == "open" or (touch.rule == "received" and received_counts)
        ):
            opens.append(touch)
    # Latest first; equal times fall to the send id, so the answer never depends on row order.
    for found in (clicks, opens):
        if found:
            return max(found, key=lambda t: (t.at, t.send_id))
    return None


def attribute_orders(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    rules: Attribution,
    customer_ids: Sequence[str] | None = None,
) -> list[Attributed]:
    """Every completed order placed in ``[since, until]`` that an e-mail earned, oldest first.

    ``customer_ids``: only these customers' orders (a report on a few customers).
    """
    query = (
        select(
            Order.id,
            Order.customer_id,
            Order.placed_at,
            Order.status,
            Order.revenue,
            Order.total,
            Order.currency,
        )
        .where(
            Order.status == "completed",
            Order.customer_id.is_not(None),
            Order.placed_at >= since,
            Order.placed_at <= until,
        )
        .order_by(Order.placed_at, Order.id)
    )
    if customer_ids is not None:
        query = query.where(Order.customer_id.in_(list(customer_ids)))
    orders = list(session.execute(query))
    touches = touches_of(
        session,
        sorted({order.customer_id for order in orders if order.customer_id}),
        since=since - max(rules.click_window, rules.open_window),
        until=until,
    )
    out = []
    for order in orders:
        assert order.customer_id is not None
        touch = credit(order.placed_at, touches.get(order.customer_id, ()), rules)
        if touch is None:
            continue
        out.append(
            Attributed(
                order_id=order.id,
                customer_id=order.customer_id,
                placed_at=order.placed_at,
                revenue=order_value(order),
                currency=order.currency or "",
                send_id=touch.send_id,
                journey=touch.journey,
                step=touch.step,
                variant=touch.variant,
                rule=touch.rule,
                touch_at=touch.at,
            )
        )
    return out


def touches_of(
    session: Session, customer_ids: Sequence[str], *, since: datetime, until: datetime
) -> dict[str, list[Touch]]:
    """The customers' clicks, opens and receipts between ``since`` and ``until``, by customer."""
    out: dict[str, list[Touch]] = defaultdict(list)
    for chunk in _chunks(customer_ids):
        sends = {
            row.id: row
            for row in session.execute(
                select(
                    EmailSend.id,
                    EmailSend.customer_id,
                    EmailSend.journey,
                    EmailSend.step,
                    EmailSend.variant,
                    EmailSend.status,
                    EmailSend.sent_at,
                ).where(
                    EmailSend.customer_id.in_(chunk),
                    asked_between(since - SEND_REACH, until),
                    EmailSend.status.in_(MAILED),
                )
            )
        }
        delivered: dict[str, datetime] = {}
        for send_ids in _chunks(list(sends)):
            events = session.execute(
                select(EmailEvent.send_id, EmailEvent.event, EmailEvent.occurred_at).where(
                    EmailEvent.send_id.in_(send_ids),
                    EmailEvent.event.in_(("click", "open", "delivered")),
                    EmailEvent.occurred_at >= since,
                    EmailEvent.occurred_at <= until,
                )
            )
            for send_id, kind, at in events:
                assert send_id is not None
                if kind == "delivered":
                    delivered[send_id] = min(at, delivered.get(send_id, at))
                    continue
                row = sends[send_id]
                rule: Rule = "click" if kind == "click" else "open"
                out[row.customer_id].append(
                    Touch(send_id, row.journey, row.step, row.variant, rule, at)
                )
        for row in sends.values():
            received = delivered.get(row.id, row.sent_at if row.status == "sent" else None)
            if received is not None and since <= received <= until:
                out[row.customer_id].append(
                    Touch(row.id, row.journey, row.step, row.variant, "received", received)
                )
    return out


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
