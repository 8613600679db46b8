"""Which journeys an event starts, signals or ends: every journey's entry and exit rules.

The one place that decides, for a stored event, what Temporal must do: each journey's
entry conditions and re-entry rules (cool-down, one running per key, once ever), and the
exits — a purchase ends every journey that ends on purchase, a refund every journey of
that order. The rules read the store as it is after the event was applied; the send
activity re-checks the same facts when an e-mail is due, so a lost signal never mails
anyone it should not. They only decide: ``starter.starting`` hands their routes to
Temporal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from activities.guardrails import suppression
from starter.events import ProductProps, SegmentEvent
from starter.order_rules import OrderRules
from starter.rows import lookup
from starter.rules import timezone_of
from starter.starting import (
    ExitJourney,
    Route,
    StartJourney,
    lapsed_journeys,
)
from triggermail.ids import (
    abandoned_cart_id,
    browse_abandonment_id,
)
from triggermail.journey_tables import BrowseAbandonment
from triggermail.store import (
    Cart,
    CartLine,
    Customer,
    EmailSend,
    Event,
    Order,
)
from triggermail.variants import HOLDOUT
from workflows import browse_abandonment
from workflows.registry import keyed_by
from workflows.types import (
    AbandonedCartInput,
    BrowseAbandonmentInput,
    CartActivity,
    ProductView,
    WelcomeInput,
)

CART_EVENTS = frozenset({"Product Added", "Product Removed", "Checkout Started"})

ENDS_ON_PURCHASE = [j for j in keyed_by("customer") if j.ends_on_purchase]
"""Journeys an order ends, by the customer-keyed ID they run under. Every one is
signalled, enabled or not: a journey started before it was switched off still runs."""

BROWSE_REACH = timedelta(days=3)
"""How long after a view a browse abandonment may still run with the default timings."""
ORDER_EXITS = {"Order Refunded": "order_refunded", "Order Cancelled": "order_cancelled"}
SENT = ("sent", "unknown", "attempting")
"""Ledger states of an e-mail that may have reached the customer."""
MAX_VIEWS_READ = 200
"""A visit's views read to count one product's: a bot's thousands are no customer's."""


class Router(OrderRules):
    """The journeys' entry and exit rules, applied to one stored event at a time: the
    shared plumbing is :class:`starter.rules.Rules`, the order journeys' rules
    :class:`starter.order_rules.OrderRules`."""

    def routes(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str | None
    ) -> list[Route]:
        """What the stored event asks of Temporal, read from the store as it now is."""
        if customer_id is None:
            return []  # a visitor nobody has named yet: no one to write to
        name = event.event if event.type == "track" else None
        routes: list[Route] = []
        if name == "Order Completed":
            order_id = event.order().order_id
            routes += [
                ExitJourney(ended.workflow_id(customer_id), "purchase", at, ref=order_id)
                for ended in ENDS_ON_PURCHASE
                if ended is not browse_abandonment.JOURNEY
                or self._may_browse(session, customer_id, at)
            ]
            routes += [
                ExitJourney(workflow_id, "purchase", at, ref=order_id)
                for workflow_ids in lapsed_journeys(session, customer_id, at).values()
                for workflow_id in workflow_ids
            ]
            order = lookup(session, Order, order_id)
            if (
                order is not None
                and order.customer_id == customer_id
                and order.status == "completed"
            ):
                routes += self._order_routes(session, event, order, at, customer_id)
        elif name in ORDER_EXITS:
            routes += self._order_exits(session, event, at, ORDER_EXITS[name])
        elif name == "Order Delivered":
            routes += self._delivered(session, event, at, customer_id)
        elif name == "Product Viewed":
            routes += self._browse(session, event, at, customer_id)
        elif name == "Product Reviewed":
            routes += self._reviewed(session, event, at, customer_id)
        if name == "Product Added" and self._may_browse(session, customer_id, at):
            # The cart journey takes over from here.
            routes.append(ExitJourney(browse_abandonment_id(customer_id), "carted", at))
        routes += self._cart(session, event, at, customer_id)
        routes += self._welcome(session, event, at, customer_id)
        return routes

    def _may_browse(self, session: Session, customer_id: str, at: datetime) -> bool:
        """Whether a browse abandonment may run for the customer: a view recent enough.

        Cheaper than a signal to a journey that is not there, for every cart change and
        order; asked even with the journey off, which may have left one running.
        """
        journey = self.journeys.browse_abandonment
        # An e-mail the cap or quiet hours hold back keeps the series running that long more.
        reach = (
            journey.window + journey.horizon() + self.journeys.guardrails.max_deferral
            if journey
            else BROWSE_REACH
        )
        viewed = session.scalar(
            select(Event.id)
            .where(
                Event.customer_id == customer_id,
                Event.timestamp >= at - max(reach, BROWSE_REACH),
                Event.event == "Product Viewed",
            )
            .limit(1)
        )
        return viewed is not None

    # -- abandoned cart ------------------------------------------------------------------

    def _cart(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        name = event.event if event.type == "track" else None
        journey = self.journeys.abandoned_cart
        if not journey.enabled:
            return []
        if name in CART_EVENTS:
            cart_id = (event.order() if name == "Checkout Started" else event.product()).cart_id
            cart = _cart_for_route(session, customer_id, cart_id)
            if cart is None or self._stale(at, journey.horizon()):
                return []
            if cart.status == "emptied":
                return [
                    ExitJourney(abandoned_cart_id(customer_id), "cart_emptied", at, ref=cart.id)
                ]
            if cart.status != "open" or not cart.lines:
                return []
            return [self._enter_cart(session, customer_id, cart, at, event)]
        anonymous_ids = anonymous_ids_of(event) if event.user_id else []
        if anonymous_ids:
            # A visitor who filled a cart and then logged in: the cart is theirs now, and its
            # quiet window counts from its last change, not from the login.
            cart = session.scalar(
                select(Cart)
                .where(
                    Cart.customer_id == customer_id,
                    Cart.anonymous_id.in_(anonymous_ids),
                    Cart.status == "open",
                )
                .order_by(Cart.last_activity_at.desc())
                .options(selectinload(Cart.lines))
                .limit(1)
            )
            if cart is None or not cart.lines:
                return []
            if self._stale(cart.last_activity_at, journey.horizon()):
                return []
            return [self._enter_cart(session, customer_id, cart, cart.last_activity_at, event)]
        return []

    def _enter_cart(
        self, session: Session, customer_id: str, cart: Cart, at: datetime, event: SegmentEvent
    ) -> StartJourney:
        return self._start(
            session,
            "abandoned_cart",
            customer_id,
            customer_id=customer_id,
            timezone=timezone_of(session, customer_id),
            input=AbandonedCartInput,
            cart_id=cart.id,
            entered_at=at,
            entry_event_id=event.message_id or "",
            signal="cart_activity",
            signal_arg=CartActivity(cart_id=cart.id, at=at),
        )

    # -- browse abandonment --------------------------------------------------------------

    def _browse(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        journey = self.journeys.browse_abandonment
        product_id = event.product().product_id
        if journey is None or not journey.enabled or product_id is None:
            return []
        if self._stale(at, journey.horizon()):
            return []
        customer = lookup(session, Customer, customer_id)
        if customer is None or not customer.email or not customer.marketing_consent:
            # Views are many: journeys that would end at the send guard are not started.
            return []
        if suppression(session, customer) is not None:
            return []  # unsubscribed, bounced…: the same, and it never counts as a series
        open_cart = session.scalar(
            select(Cart.id)
            .where(
                Cart.customer_id == customer_id,
                Cart.status == "open",
                Cart.last_activity_at >= at - journey.window,
                Cart.lines.any(),
            )
            .limit(1)
        )
        if open_cart is not None and not self._keeps_coming_back(
            session, customer_id, product_id, at, journey
        ):
            # A cart filled in this visit: the abandoned-cart journey's customer. A cart
            # left weeks ago does not make today's browsing any less abandoned.
            return []
        recent_order = session.scalar(
            select(Order.id)
            .where(
                Order.customer_id == customer_id,
                Order.status == "completed",
                Order.placed_at >= at - journey.skip_if_ordered_within,
            )
            .limit(1)
        )
        if recent_order is not None:
            return []
        mailed = session.scalar(
            select(EmailSend.id)
            .where(
                EmailSend.customer_id == customer_id,
                EmailSend.journey == "browse_abandonment",
                # A holdout's series counts as one: otherwise the holdout enters at every
                # visit, the mailed once a week, and lift compares unlike entries.
                or_(
                    EmailSend.status.in_(SENT),
                    and_(EmailSend.status == "skipped", EmailSend.reason == HOLDOUT),
                ),
                EmailSend.due_at >= at - journey.cool_down,
            )
            .limit(1)
        )
        if mailed is not None:
            return []  # cool-down: one series a week at most
        return [
            self._start(
                session,
                "browse_abandonment",
                customer_id,
                customer_id=customer_id,
                timezone=customer.timezone,
                input=BrowseAbandonmentInput,
                entered_at=at,
                entry_event_id=event.message_id or "",
                window_s=journey.window.total_seconds(),
                signal="viewed",
                signal_arg=ProductView(product_id=product_id, at=at),
            )
        ]

    def _keeps_coming_back(
        self,
        session: Session,
        customer_id: str,
        product_id: str,
        at: datetime,
        journey: BrowseAbandonment,
    ) -> bool:
        """Whether a product not in the customer's cart was viewed ``min_views`` times in
        the window (this view included): wanted, and still left out of the cart."""
        in_cart = session.scalar(
            select(CartLine.id)
            .join(Cart, Cart.id == CartLine.cart_id)
            .where(
                Cart.customer_id == customer_id,
                Cart.status == "open",
                CartLine.product_id == product_id,
            )
            .limit(1)
        )
        if in_cart is not None:
            return False
        payloads = session.scalars(
            select(Event.payload)
            .where(
                Event.customer_id == customer_id,
                Event.timestamp >= at - journey.window,
                Event.timestamp <= at,
                Event.event == "Product Viewed",
            )
            .order_by(Event.timestamp.desc())
            .limit(MAX_VIEWS_READ)
        )
        views = sum(_viewed_product(payload) == product_id for payload in payloads)
        return views >= journey.min_views

    # -- welcome -------------------------------------------------------------------------

    def _welcome(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        """A sign-up, or the ``identify`` that first lets us mail someone: welcome them, once."""
        journey = self.journeys.welcome
        if journey is None or not journey.enabled:
            return []
        signed_up = event.type == "track" and event.event == "Signed Up"
        if not (signed_up or event.type == "identify"):
            return []
        customer = lookup(session, Customer, customer_id)
        if customer is None or not customer.email or not customer.marketing_consent:
            # Starting now would end at the send guard and use up the one welcome; the
            # identify that brings the address and consent starts it instead.
            return []
        if not signed_up and customer.mailable_since != at:
            # A login of someone we could mail before is no new customer: switching the
            # welcome on must not welcome the whole shop at its next visit.
            return []
        if self._stale(at, journey.horizon()):
            return []
        # Temporal refuses a second start of the welcome ID while it remembers the first;
        # the ledger remembers beyond the namespace's retention.
        welcomed = session.scalar(
            select(EmailSend.id)
            .where(EmailSend.customer_id == customer_id, EmailSend.journey == "welcome")
            .limit(1)
        )
        if welcomed is not None:
            return []
        return [
            self._start(
                session,
                "welcome",
                customer_id,
                customer_id=customer_id,
                timezone=customer.timezone,
                input=WelcomeInput,
                entered_at=at,
                entry_event_id=event.message_id or "",
                once=True,
            )
        ]


def anonymous_ids_of(event: SegmentEvent) -> list[str]:
    """The anonymous ids a call ties to its userId (an alias names the old one previousId)."""
    ids = [event.anonymous_id, event.previous_id if event.type == "alias" else None]
    return list(dict.fromkeys(i for i in ids if i and i != event.user_id))


def _viewed_product(payload: dict[str, Any]) -> str | None:
    """The product id of a stored ``Product Viewed`` (validated when it came in)."""
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return None
    return ProductProps.model_validate(properties).product_id


def _cart_for_route(session: Session, customer_id: str, cart_id: str | None) -> Cart | None:
    if cart_id:
        return lookup(session, Cart, cart_id, options=[selectinload(Cart.lines)])
    return session.scalar(
        select(Cart)
        .where(Cart.customer_id == customer_id)
        .order_by(Cart.last_activity_at.desc())
        .options(selectinload(Cart.lines))
        .limit(1)
    )
