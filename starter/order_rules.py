"""The order journeys' rules: post-purchase, review request and replenishment start on an
order (or its delivery), and a refund, a cancel or a review ends them.

Apart from ``starter.routing`` because an order's journeys are keyed by the order or its
products, not by the customer, and read the order's lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from starter.events import SegmentEvent
from starter.rows import lookup
from starter.rules import Rules, ran_before, timezone_of
from starter.starting import (
    ORDER_JOURNEYS_HORIZON,
    ExitJourney,
    Route,
    replenishment_key,
)
from triggermail.ids import (
    post_purchase_id,
    replenishment_id,
    review_request_id,
)
from triggermail.store import (
    Order,
    OrderLine,
    Product,
    Review,
)
from workflows.types import (
    OrderDelivered,
    PostPurchaseInput,
    ReplenishmentInput,
    Repurchase,
    ReviewRequestInput,
)


class OrderRules(Rules):
    """The rules of the journeys an order starts, mixed into :class:`starter.routing.Router`."""

    # -- orders: post-purchase, review request, replenishment ----------------------------

    def _order_routes(
        self, session: Session, event: SegmentEvent, order: Order, at: datetime, customer_id: str
    ) -> list[Route]:
        routes: list[Route] = []
        message_id = event.message_id or ""
        timezone = timezone_of(session, customer_id)
        post = self.journeys.post_purchase
        if (
            post is not None
            and post.enabled
            and not self._stale(at, post.horizon())
            and not ran_before(session, customer_id, post_purchase_id(order.id))
        ):
            routes.append(
                self._start(
                    session,
                    "post_purchase",
                    order.id,
                    customer_id=customer_id,
                    timezone=timezone,
                    input=PostPurchaseInput,
                    order_id=order.id,
                    entered_at=at,
                    entry_event_id=message_id,
                    once=True,
                )
            )
        review = self.journeys.review_request
        if order.delivered_at is not None:
            # Its delivery was reported before the order itself.
            routes += self._review_from(session, order, order.delivered_at, message_id)
        elif (
            review is not None
            and review.enabled
            and review.expected_delivery is not None
            and order.lines
            and not self._stale(at, review.expected_delivery + review.horizon())
            and not ran_before(session, customer_id, review_request_id(order.id))
        ):
            routes.append(
                self._start(
                    session,
                    "review_request",
                    order.id,
                    customer_id=customer_id,
                    timezone=timezone,
                    input=ReviewRequestInput,
                    order_id=order.id,
                    entered_at=at,
                    entry_event_id=message_id,
                    expected_delivery_at=at + review.expected_delivery,
                    once=True,
                )
            )
        routes += self._replenish(session, order, at, customer_id, message_id, timezone)
        return routes

    def _replenish(
        self,
        session: Session,
        order: Order,
        at: datetime,
        customer_id: str,
        message_id: str,
        timezone: str | None,
    ) -> list[Route]:
        journey = self.journeys.replenishment
        if journey is None or not journey.enabled:
            return []
        routes: list[Route] = []
        for key, product, cycle in self._cycles(session, order):
            due_at = at + cycle - journey.lead
            if self._stale(due_at, journey.horizon()):
                continue
            purchase = Repurchase(
                order_id=order.id, product_id=product.id, at=at, event_id=message_id, due_at=due_at
            )
            routes.append(
                self._start(
                    session,
                    "replenishment",
                    customer_id,
                    key,
                    customer_id=customer_id,
                    timezone=timezone,
                    input=ReplenishmentInput,
                    key=key,
                    product_id=product.id,
                    order_id=order.id,
                    entered_at=at,
                    entry_event_id=message_id,
                    due_at=due_at,
                    signal="repurchased",
                    signal_arg=purchase,
                )
            )
        return routes

    def _cycles(self, session: Session, order: Order) -> Iterable[tuple[str, Product, timedelta]]:
        """Each product of the order that runs out, once per key, with its cycle."""
        journey = self.journeys.replenishment
        assert journey is not None
        seen: set[str] = set()
        for line in order.lines:
            product = lookup(session, Product, line.product_id)
            if product is None:
                continue
            cycle = journey.cycle_of(product.repurchase_days, product.category)
            if cycle is None or cycle <= journey.lead:
                continue
            key = replenishment_key(journey.match, product)
            if key is None or key in seen:
                continue
            seen.add(key)
            yield key, product, cycle

    def _order_exits(
        self, session: Session, event: SegmentEvent, at: datetime, reason: str
    ) -> list[Route]:
        order_id = event.order().order_id
        assert order_id is not None  # parse_event requires it
        routes: list[Route] = [
            ExitJourney(post_purchase_id(order_id), reason, at, ref=order_id),
            ExitJourney(review_request_id(order_id), reason, at, ref=order_id),
        ]
        order = lookup(session, Order, order_id)
        journey = self.journeys.replenishment
        if order is not None and order.customer_id and journey is not None:
            # The replenishment counting from this order ends; one counting from a later
            # order of the product ignores it (the workflow compares the order id).
            for line in order.lines:
                product = lookup(session, Product, line.product_id)
                key = replenishment_key(journey.match, product) if product else None
                if key is not None:
                    routes.append(
                        ExitJourney(
                            replenishment_id(order.customer_id, key), reason, at, ref=order_id
                        )
                    )
        return routes

    def _delivered(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        order = lookup(session, Order, event.order().order_id)
        if order is None or order.customer_id != customer_id or order.status != "completed":
            # Nothing known to review yet (the order, when it comes, finds this report in
            # the store), or the order was undone.
            return []
        return self._review_from(session, order, at, event.message_id or "")

    def _review_from(
        self, session: Session, order: Order, delivered_at: datetime, message_id: str
    ) -> list[Route]:
        """The review request of a delivered order: started, or told of the delivery."""
        journey = self.journeys.review_request
        customer_id = order.customer_id
        if journey is None or not journey.enabled or customer_id is None:
            return []
        if not order.lines or self._stale(delivered_at, journey.horizon()):
            return []
        if ran_before(session, customer_id, review_request_id(order.id)):
            return []  # asked already: a later delivery report moves nothing
        return [
            self._start(
                session,
                "review_request",
                order.id,
                customer_id=customer_id,
                timezone=timezone_of(session, customer_id),
                input=ReviewRequestInput,
                order_id=order.id,
                entered_at=delivered_at,
                entry_event_id=message_id,
                signal="delivered",
                signal_arg=OrderDelivered(at=delivered_at),
                once=True,
            )
        ]

    def _reviewed(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        """Orders whose every product the customer has now reviewed: nothing left to ask."""
        product_id = event.product().product_id
        if product_id is None:
            return []
        orders = session.scalars(
            select(Order)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .where(
                Order.customer_id == customer_id,
                OrderLine.product_id == product_id,
                Order.placed_at >= at - ORDER_JOURNEYS_HORIZON,
            )
            .options(selectinload(Order.lines))
        ).unique()
        reviewed = set(
            session.scalars(select(Review.product_id).where(Review.customer_id == customer_id))
        )
        return [
            ExitJourney(review_request_id(order.id), "reviewed", at, ref=product_id)
            for order in orders
            if {line.product_id for line in order.lines} <= reviewed
        ]
