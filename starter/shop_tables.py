"""The shop's tables as events describe them: customers, identities, carts, orders, products.

Applying a stored event to these rows is what routing then reads (a cart's lines, an
order's status, who a visitor is). Apart from the intake, which only orders the work
(parse, store, apply, route, deliver) and owns its transactions and retries; this module
neither commits nor talks to Temporal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session, selectinload

from starter.events import OrderProps, ProductProps, SegmentEvent
from starter.routing import anonymous_ids_of
from starter.rows import lookup, remember
from triggermail.birthdays import month_day, parse_birthday
from triggermail.journeys import Shop
from triggermail.store import (
    Cart,
    CartLine,
    Customer,
    Event,
    Identity,
    Order,
    OrderLine,
    Product,
    Review,
    insert_for,
    new_id,
    order_stats,
)

EARLY_DELIVERIES_READ = 100
"""A customer's latest delivery reports, read to find one that came before its order."""
DELIVERY_CLOCK_SLACK = timedelta(days=1)


class ShopTables:
    """Applies one stored event to the shop's tables, in the intake's session."""

    def __init__(self, *, shop: Shop, clock: Callable[[], datetime]) -> None:
        self.shop = shop
        self.clock = clock

    def owner(self, session: Session, event: SegmentEvent, at: datetime) -> str | None:
        """Whose event this is, linking its anonymous ids to the customer when it names one."""
        if event.user_id:
            _ensure_customer(session, event.user_id, self.clock())
            for anonymous_id in anonymous_ids_of(event):
                _link(session, anonymous_id, event.user_id, at, event.message_id or "")
            return event.user_id
        if event.anonymous_id:
            identity = lookup(session, Identity, event.anonymous_id)
            return identity.customer_id if identity is not None else None
        return None

    def apply(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str | None
    ) -> None:
        """Update what the event describes: its customer's traits; for a ``track``, the
        cart, order, product or review it speaks of."""
        customer = session.get(Customer, customer_id) if customer_id else None
        # Traits describe whoever the call names; a linked device's anonymous call does not
        # speak for the customer (a shared computer).
        if (
            customer is not None
            and event.user_id
            and (event.type == "identify" or event.context.get("traits"))
        ):
            _apply_traits(customer, event, at)
        if event.type != "track":
            return
        owner = _Owner(customer_id, event.anonymous_id)
        if owner.customer_id is None and owner.anonymous_id is None:
            return
        name = event.event
        if name == "Product Added":
            self._product_added(session, owner, event, at)
        elif name == "Product Removed":
            self._product_removed(session, owner, event, at)
        elif name == "Checkout Started":
            self._checkout_started(session, owner, event, at)
        elif name == "Order Completed":
            self._order_completed(session, owner, event, at)
            order_stats(session, owner.customer_id)
        elif name in ("Order Refunded", "Order Cancelled"):
            order = lookup(session, Order, event.order().order_id)
            if order is not None:
                order.status = "refunded" if name == "Order Refunded" else "cancelled"
                order_stats(session, order.customer_id)
        elif name in ("Order Shipped", "Order Delivered"):
            order = lookup(session, Order, event.order().order_id)
            if order is not None:
                # The first report counts: a repeated scan does not move the delivery.
                if name == "Order Shipped":
                    order.shipped_at = order.shipped_at or at
                else:
                    order.delivered_at = order.delivered_at or at
        elif name in ("Product Viewed", "Product Reviewed"):
            product = _upsert_product(session, event.product(), self.shop.currency, self.clock())
            if name == "Product Reviewed" and product is not None and owner.customer_id:
                session.add(
                    Review(
                        message_id=event.message_id or new_id(),
                        customer_id=owner.customer_id,
                        product_id=product.id,
                        rating=_rating(event.properties.get("rating")),
                        reviewed_at=at,
                    )
                )

    def _cart(self, session: Session, owner: _Owner, cart_id: str | None, at: datetime) -> Cart:
        """The cart an event speaks of: by id, else the owner's open cart, else a new one."""
        cart = None
        if cart_id:
            cart = lookup(session, Cart, cart_id, options=[selectinload(Cart.lines)])
        else:
            cart = session.scalar(
                select(Cart)
                .where(owner.owns(Cart), Cart.status == "open")
                .order_by(Cart.last_activity_at.desc())
                .limit(1)
            )
        if cart is None:
            cart = Cart(
                id=cart_id or new_id(),
                customer_id=owner.customer_id,
                anonymous_id=owner.anonymous_id,
                status="open",
                last_activity_at=at,
                lines=[],
            )
            session.add(cart)
            remember(session, Cart, cart.id, cart)
        elif cart.status != "open" and at > cart.last_activity_at:
            # A shop that reuses cart ids: a change after the order starts a fresh cart.
            cart.status, cart.lines = "open", []
        if cart.customer_id is None and owner.customer_id is not None:
            cart.customer_id = owner.customer_id  # a visitor's cart, now named by its customer
        return cart

    def _product_added(
        self, session: Session, owner: _Owner, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.product()
        product = _upsert_product(session, props, self.shop.currency, self.clock())
        if product is None:
            return
        cart = self._cart(session, owner, props.cart_id, at)
        if cart.status != "open":
            return  # an old event about a cart already ordered
        line = next((ln for ln in cart.lines if ln.product_id == product.id), None)
        if line is None:
            cart.lines.append(
                CartLine(
                    product_id=product.id,
                    quantity=max(props.quantity, 1),
                    price=props.price,
                    position=len(cart.lines),
                )
            )
        else:
            line.quantity += max(props.quantity, 1)
            if props.price is not None:
                line.price = props.price
        cart.currency = props.currency or cart.currency or self.shop.currency
        cart.last_activity_at = max(cart.last_activity_at, at)

    def _product_removed(
        self, session: Session, owner: _Owner, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.product()
        cart = self._cart(session, owner, props.cart_id, at)
        if cart.status != "open" or props.product_id is None:
            return
        for line in list(cart.lines):
            if line.product_id == props.product_id:
                # Segment's quantity on a removal says how many went; none means the line.
                if "quantity" in props.model_fields_set and props.quantity < line.quantity:
                    line.quantity -= props.quantity
                else:
                    cart.lines.remove(line)
        cart.last_activity_at = max(cart.last_activity_at, at)
        if not cart.lines:
            cart.status = "emptied"

    def _checkout_started(
        self, session: Session, owner: _Owner, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.order()
        cart = self._cart(session, owner, props.cart_id, at)
        if cart.status != "open":
            return
        if props.products:
            # The checkout is the cart as the customer last saw it: it replaces the lines
            # (the old ones go first: one line per product).
            if cart.lines:
                cart.lines = []
                session.flush()
            for position, item in enumerate(props.products):
                product = _upsert_product(
                    session, item, props.currency or self.shop.currency, self.clock()
                )
                if product is None:
                    continue
                existing = next((ln for ln in cart.lines if ln.product_id == product.id), None)
                if existing is not None:
                    existing.quantity += max(item.quantity, 1)
                    continue
                cart.lines.append(
                    CartLine(
                        product_id=product.id,
                        quantity=max(item.quantity, 1),
                        price=item.price,
                        position=position,
                    )
                )
        cart.currency = props.currency or cart.currency or self.shop.currency
        cart.last_activity_at = max(cart.last_activity_at, at)

    def _order_completed(
        self, session: Session, owner: _Owner, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.order()
        assert props.order_id is not None  # parse_event requires it
        order = lookup(session, Order, props.order_id)
        if order is None:
            order = Order(id=props.order_id, placed_at=at, lines=[])
            session.add(order)
            remember(session, Order, order.id, order)
        order.customer_id = order.customer_id or owner.customer_id
        order.anonymous_id = order.anonymous_id or owner.anonymous_id
        if order.status not in ("refunded", "cancelled"):
            # The same order reported again after its refund is still refunded.
            order.status = "completed"
        if order.delivered_at is None and owner.customer_id:
            # Events may come out of order: a delivery reported before its order counts.
            order.delivered_at = _reported_delivery(session, owner.customer_id, order.id, at)
        order.total = props.total if props.total is not None else props.revenue
        order.revenue = props.revenue if props.revenue is not None else props.total
        order.currency = props.currency or self.shop.currency
        order.coupon = props.coupon
        order.cart_id = props.cart_id
        if props.products:
            order.lines = []
            session.flush()
            for item in props.products:
                product = _upsert_product(session, item, order.currency, self.clock())
                if product is not None:
                    order.lines.append(
                        OrderLine(
                            product_id=product.id, quantity=max(item.quantity, 1), price=item.price
                        )
                    )
        # The order closes every cart the customer had open before it.
        session.execute(
            update(Cart)
            .where(owner.owns(Cart), Cart.status == "open", Cart.last_activity_at <= at)
            .values(status="ordered")
        )
        if props.cart_id:
            session.execute(update(Cart).where(Cart.id == props.cart_id).values(status="ordered"))


@dataclass(frozen=True)
class _Owner:
    """Who a cart or order belongs to: a customer, or an anonymous visitor not yet named."""

    customer_id: str | None
    anonymous_id: str | None

    def owns(self, model: type[Cart] | type[Order]) -> ColumnElement[bool]:
        if self.customer_id is not None:
            return model.customer_id == self.customer_id
        return and_(model.anonymous_id == self.anonymous_id, model.customer_id.is_(None))


def _link(
    session: Session, anonymous_id: str, customer_id: str, at: datetime, message_id: str
) -> None:
    identity = lookup(session, Identity, anonymous_id)
    if identity is None:
        identity = Identity(
            anonymous_id=anonymous_id, customer_id=customer_id, linked_at=at, message_id=message_id
        )
        session.add(identity)
        remember(session, Identity, anonymous_id, identity)
    elif identity.customer_id == customer_id:
        return  # linked before: what the visitor did since was theirs on arrival
    elif at < identity.linked_at:
        return  # a late event of an earlier owner does not take the device back
    else:
        identity.customer_id, identity.linked_at, identity.message_id = (
            customer_id,
            at,
            message_id,
        )
    # What the visitor did before is the customer's now. Only rows nobody owns move: a
    # shared device's past never changes hands.
    for model in (Event, Cart, Order):
        session.execute(
            update(model)
            .where(model.anonymous_id == anonymous_id, model.customer_id.is_(None))
            .values(customer_id=customer_id)
        )
    order_stats(session, customer_id)  # guest orders may have become theirs


def _reported_delivery(
    session: Session, customer_id: str, order_id: str, placed_at: datetime
) -> datetime | None:
    """When an ``Order Delivered`` for the order, stored before the order was, happened
    (the first such report, as for an order known at the time)."""
    rows = session.execute(
        select(Event.timestamp, Event.payload)
        .where(
            Event.customer_id == customer_id,
            # Delivered after it was placed: only the customer's events since then are read
            # (a day's slack for the shop's clocks), not their whole history per order.
            Event.timestamp >= placed_at - DELIVERY_CLOCK_SLACK,
            Event.event == "Order Delivered",
        )
        .order_by(Event.timestamp.desc())
        .limit(EARLY_DELIVERIES_READ)
    )
    reported = [
        at
        for at, payload in rows
        if isinstance(properties := payload.get("properties"), dict)
        and OrderProps.model_validate(properties).order_id == order_id
    ]
    return min(reported, default=None)


def _ensure_customer(session: Session, customer_id: str, now: datetime) -> Customer:
    customer = lookup(session, Customer, customer_id)
    if customer is not None:
        return customer
    # INSERT … ON CONFLICT DO NOTHING: two events of a new customer may race.
    session.execute(
        insert_for(session)(Customer)
        .values(
            id=customer_id,
            marketing_consent=False,
            traits={},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    customer = session.get(Customer, customer_id)
    assert customer is not None
    return customer


def _apply_traits(customer: Customer, event: SegmentEvent, at: datetime) -> None:
    traits = event.identity_traits()
    if traits.email is not None:
        customer.email = str(traits.email).lower()
    if traits.first_name is not None:
        customer.first_name = traits.first_name
    if traits.last_name is not None:
        customer.last_name = traits.last_name
    locale = traits.locale or event.context.get("locale")
    if isinstance(locale, str) and locale:
        customer.locale = locale
    timezone = traits.timezone or event.context.get("timezone")
    if isinstance(timezone, str) and timezone:
        customer.timezone = timezone
    if traits.marketing_consent is not None:
        customer.marketing_consent = traits.marketing_consent
    if customer.mailable_since is None and customer.email and customer.marketing_consent:
        customer.mailable_since = at  # the welcome's "first identify with consent"
    born = parse_birthday(traits.birthday)
    if born is not None:
        customer.birthday, customer.birthday_md = born, month_day(born)
    known = {"email", "first_name", "firstName", "last_name", "lastName"}
    extra = {
        k: v for k, v in (traits.model_dump(mode="json", by_alias=False)).items() if v is not None
    }
    customer.traits = {
        **(customer.traits or {}),
        **{k: v for k, v in extra.items() if k not in known},
    }


def _rating(value: Any) -> int | None:
    """Segment's ``rating`` as shops send it: 5, 4.5 or "5"; anything else is no rating."""
    try:
        return round(float(value)) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def _upsert_product(
    session: Session, props: ProductProps, currency: str, now: datetime
) -> Product | None:
    if not props.product_id:
        return None
    product = lookup(session, Product, props.product_id)
    if product is None:
        session.execute(
            insert_for(session)(Product)
            .values(id=props.product_id, name=props.name or props.product_id, updated_at=now)
            .on_conflict_do_nothing()
        )
        product = session.get(Product, props.product_id)
        assert product is not None
    # Events carry the catalogue as the shop shows it now: the latest non-empty value wins.
    if props.name:
        product.name = props.name
    if props.price is not None:
        product.price = Decimal(props.price)
        product.currency = props.currency or product.currency or currency
    for attr in ("brand", "category", "url", "image_url"):
        value = getattr(props, attr)
        if value:
            setattr(product, attr, value)
    if props.stock is not None:
        product.stock = props.stock
    if props.repurchase_days is not None:
        product.repurchase_days = props.repurchase_days
    return product
