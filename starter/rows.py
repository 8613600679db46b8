"""The rows one intake batch touches, loaded in a few queries and remembered in the session.

Applying and routing an event then reads them from memory (absent rows included), so a
batch of a thousand events runs a handful of queries, not thousands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, selectinload

from starter.events import ORDER_EVENTS, PRODUCT_EVENTS, ProductProps, SegmentEvent
from triggermail.store import Cart, Customer, Identity, Order, Product

KNOWN = "triggermail.known"
Row = TypeVar("Row", Customer, Product, Cart, Order, Identity)


def prefetch(session: Session, events: Sequence[SegmentEvent], now: datetime) -> None:
    """Load what a batch's events touch in a few queries, and create the customers and
    products it names, so applying each event runs no query of its own and its rows reach
    the database together at commit."""
    customers = {e.user_id for e in events if e.user_id}
    anonymous = {i for e in events for i in (e.anonymous_id, e.previous_id) if i}
    products: dict[str, ProductProps] = {}
    carts: set[str] = set()
    orders: set[str] = set()
    for event in events:
        if event.type != "track":
            continue
        if event.event in PRODUCT_EVENTS:
            items = [event.product()]
            cart_id, order_id = items[0].cart_id, None
        elif event.event in ORDER_EVENTS:
            order = event.order()
            items, cart_id, order_id = order.products, order.cart_id, order.order_id
        else:
            continue
        for item in items:
            if item.product_id:
                products.setdefault(item.product_id, item)
        carts.update([cart_id] if cart_id else [])
        orders.update([order_id] if order_id else [])

    load(session, Customer, customers)
    load(session, Identity, anonymous)
    load(session, Cart, carts, selectinload(Cart.lines))
    load(session, Order, orders, selectinload(Order.lines))
    missing = load(session, Product, set(products))
    for customer_id in customers - known(session, Customer):
        customer = Customer(
            id=customer_id, marketing_consent=False, traits={}, created_at=now, updated_at=now
        )
        session.add(customer)
        remember(session, Customer, customer_id, customer)
    for product_id in missing:
        props = products[product_id]
        product = Product(id=product_id, name=props.name or product_id, updated_at=now)
        session.add(product)
        remember(session, Product, product_id, product)
    # Rows that reference customers and products have no relationship to order the flush by.
    session.flush()


def load(session: Session, model: type[Row], keys: set[str], *options: Any) -> set[str]:
    """Remember the rows of ``model`` with these keys, and which are absent; returns those."""
    key = inspect(model).primary_key[0]
    ordered = sorted(keys)
    found: dict[str, Any] = {}
    for chunk in range(0, len(ordered), 500):
        statement = select(model).where(key.in_(ordered[chunk : chunk + 500])).options(*options)
        found.update((getattr(row, key.name), row) for row in session.scalars(statement))
    for value in ordered:
        remember(session, model, value, found.get(value))
    return keys - found.keys()


def known(session: Session, model: type[Row]) -> set[str]:
    return {k for k, v in session.info.get(KNOWN, {}).get(model, {}).items() if v is not None}


def remember(session: Session, model: type[Row], key: str, row: Row | None) -> None:
    # Strong references too: the session's identity map alone would let them go.
    session.info.setdefault(KNOWN, {}).setdefault(model, {})[key] = row


def lookup(session: Session, model: type[Row], key: str | None, **options: Any) -> Row | None:
    """``session.get``, answered from what the batch prefetched (absent rows included)."""
    if key is None:
        return None
    known = session.info.get(KNOWN, {}).get(model)
    if known is not None and key in known:
        row: Row | None = known[key]
        return row
    return session.get(model, key, **options)
