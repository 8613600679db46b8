"""Customer segments: the top spenders (VIP), repeat buyers, one-time buyers.

Read from the order statistics the intake keeps on each customer, so segmenting the
day's lapsed customers costs two indexed queries, not a pass over every order.
"""

from __future__ import annotations

import math
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triggermail.journeys import Segments
from triggermail.store import Customer


def vip_threshold(session: Session, segments: Segments) -> Decimal | None:
    """The least a customer has spent to be in the top ``vip_percent`` of buyers; None when
    nobody has bought yet."""
    buyers = session.scalar(select(func.count()).where(Customer.total_spent > 0)) or 0
    if buyers == 0:
        return None
    rank = max(math.ceil(buyers * segments.vip_percent / 100), 1)
    spent = session.scalar(
        select(Customer.total_spent)
        .where(Customer.total_spent > 0)
        .order_by(Customer.total_spent.desc())
        .offset(rank - 1)
        .limit(1)
    )
    return Decimal(spent) if spent is not None else None


def segment_of(customer: Customer, threshold: Decimal | None, segments: Segments) -> str:
    """``vip``, ``repeat`` or ``one_time`` for a customer with ``threshold`` from
    :func:`vip_threshold` (computed once per sweep)."""
    if (
        threshold is not None
        and customer.total_spent >= threshold
        and customer.orders_count >= segments.vip_min_orders
    ):
        return "vip"
    return "repeat" if customer.orders_count >= 2 else "one_time"
