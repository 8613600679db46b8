"""Customer segments: the top spenders (VIP), repeat buyers, one-time buyers.

Read from the order statistics the intake keeps on each customer, so segmenting the
day's lapsed customers costs a few indexed queries, not a pass over every order or
every customer.
"""

from __future__ import annotations

import math
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from triggermail.journeys import Segments
from triggermail.store import BuyerTally, Customer


def buyers(session: Session) -> int:
    """The number of customers with ``total_spent > 0``, from the tally the store keeps.

    Folds the tally's rows (the changes since the last call) into one, in ``session``'s
    transaction: the cost grows with the customers who started or stopped buying since,
    not with the customers there are.
    """
    # DELETE … RETURNING, not a read then a delete: a row another sweep folded at the same
    # time is summed by exactly one of them.
    changes = session.scalars(delete(BuyerTally).returning(BuyerTally.change)).all()
    if changes:
        session.add(BuyerTally(change=sum(changes)))
        session.flush()
    return int(session.scalar(select(func.coalesce(func.sum(BuyerTally.change), 0))) or 0)


def vip_threshold(session: Session, segments: Segments) -> Decimal | None:
    """The least a customer has spent to be in the top ``vip_percent`` of buyers; None when
    nobody has bought yet.

    The buyers come from :func:`buyers`; the threshold is an index walk down
    ``total_spent`` over the top ``vip_percent`` alone.
    """
    count = buyers(session)
    if count <= 0:
        return None
    rank = max(math.ceil(count * segments.vip_percent / 100), 1)
    spent = session.scalar(
        select(Customer.total_spent)
        .where(Customer.total_spent > 0)
        .order_by(Customer.total_spent.desc())
        .offset(rank - 1)
        .limit(1)
    )
    return Decimal(spent) if spent is not None else None


def segment_of(
    total_spent: Decimal, orders_count: int, threshold: Decimal | None, segments: Segments
) -> str:
    """``vip``, ``repeat`` or ``one_time`` for a customer who spent ``total_spent`` over
    ``orders_count`` orders, with ``threshold`` from :func:`vip_threshold` (computed once
    per sweep)."""
    if (
        threshold is not None
        and total_spent >= threshold
        and orders_count >= segments.vip_min_orders
    ):
        return "vip"
    return "repeat" if orders_count >= 2 else "one_time"
