"""Which journeys an event starts, signals or ends: every journey's entry and exit rules.

The one place that decides, for a stored event, what Temporal must do: each journey's
entry conditions and re-entry rules (cool-down, one running per key, once ever), and the
exits — a purchase ends every journey that ends on purchase, a refund every journey of
that order. The rules read the store as it is after the event was applied; the send
activity re-checks the same facts when an e-mail is due, so a lost signal never mails
anyone it should not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.guardrails import suppression
from starter.events import ProductProps, SegmentEvent
from starter.rows import lookup
from triggermail.ids import (
    abandoned_cart_id,
    browse_abandonment_id,
    post_purchase_id,
    replenishment_id,
    review_request_id,
    welcome_id,
)
from triggermail.journey_tables import LONGEST_CYCLE, BrowseAbandonment
from triggermail.journeys import JourneysConfig
from triggermail.search_attributes import journey_attributes
from triggermail.store import (
    Cart,
    CartLine,
    Customer,
    EmailSend,
    Event,
    JourneyEntry,
    Order,
    OrderLine,
    Product,
    Review,
)
from triggermail.variants import HOLDOUT
from triggermail.winners import Winners
from workflows import browse_abandonment, registry
from workflows.registry import customer_journey_ids, keyed_by
from workflows.types import (
    AbandonedCartInput,
    BrowseAbandonmentInput,
    CartActivity,
    JourneyExit,
    JourneySpec,
    OrderDelivered,
    PostPurchaseInput,
    ProductView,
    ReplenishmentInput,
    Repurchase,
    ReviewRequestInput,
    WelcomeInput,
)

CART_EVENTS = frozenset({"Product Added", "Product Removed", "Checkout Started"})
RPC_TIMEOUT = timedelta(seconds=10)
"""A Temporal call slower than this is answered 503, well before an SDK's own timeout."""

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
ORDER_JOURNEYS_HORIZON = timedelta(days=400)
"""How far back a customer's orders may still have journeys running (a year's cycle)."""
LAPSED_JOURNEYS = [j.name for j in keyed_by("lapse")]
"""Journeys keyed by customer and lapse, found from the entries the daily sweep records."""


@dataclass(frozen=True)
class StartJourney:
    """Start a journey, or hand the signal to the one already running under its ID."""

    journey: str
    workflow_id: str
    customer_id: str
    input: Any
    signal: str | None = None
    signal_arg: Any = None
    once: bool = False
    """The ID is used once ever (a welcome, an order's journeys): a closed run refuses it."""


@dataclass(frozen=True)
class ExitJourney:
    """End a journey if one runs under the ID (nothing to do otherwise)."""

    workflow_id: str
    reason: str
    at: datetime
    ref: str | None = None


Route = StartJourney | ExitJourney


class Router:
    """The journeys' entry and exit rules, applied to one stored event at a time."""

    def __init__(self, journeys: JourneysConfig, clock: Callable[[], datetime]) -> None:
        self.journeys = journeys
        self.clock = clock
        self.winners = Winners()

    def _spec(self, session: Session, journey: str, customer_id: str) -> JourneySpec:
        """The journey as this customer enters it: their variants, or the holdout."""
        winners = self.winners.current(session, self.journeys)
        return self.journeys.spec(journey, customer_id=customer_id, winners=winners)

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

    def _stale(self, at: datetime, horizon: timedelta) -> bool:
        # History being imported: its journey would already be over.
        return self.clock() - at > horizon

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
        return StartJourney(
            journey="abandoned_cart",
            workflow_id=abandoned_cart_id(customer_id),
            customer_id=customer_id,
            input=AbandonedCartInput(
                customer_id=customer_id,
                cart_id=cart.id,
                entered_at=at,
                entry_event_id=event.message_id or "",
                spec=self._spec(session, "abandoned_cart", customer_id),
                timezone=_timezone(session, customer_id),
            ),
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
            StartJourney(
                journey="browse_abandonment",
                workflow_id=browse_abandonment_id(customer_id),
                customer_id=customer_id,
                input=BrowseAbandonmentInput(
                    customer_id=customer_id,
                    entered_at=at,
                    entry_event_id=event.message_id or "",
                    spec=self._spec(session, "browse_abandonment", customer_id),
                    window_s=journey.window.total_seconds(),
                    timezone=customer.timezone,
                ),
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

    # -- orders: post-purchase, review request, replenishment ----------------------------

    def _order_routes(
        self, session: Session, event: SegmentEvent, order: Order, at: datetime, customer_id: str
    ) -> list[Route]:
        routes: list[Route] = []
        message_id = event.message_id or ""
        timezone = _timezone(session, customer_id)
        post = self.journeys.post_purchase
        if (
            post is not None
            and post.enabled
            and not self._stale(at, post.horizon())
            and not _ran_before(session, customer_id, post_purchase_id(order.id))
        ):
            routes.append(
                StartJourney(
                    journey="post_purchase",
                    workflow_id=post_purchase_id(order.id),
                    customer_id=customer_id,
                    input=PostPurchaseInput(
                        customer_id=customer_id,
                        order_id=order.id,
                        entered_at=at,
                        entry_event_id=message_id,
                        spec=self._spec(session, "post_purchase", customer_id),
                        timezone=timezone,
                    ),
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
            and not _ran_before(session, customer_id, review_request_id(order.id))
        ):
            routes.append(
                StartJourney(
                    journey="review_request",
                    workflow_id=review_request_id(order.id),
                    customer_id=customer_id,
                    input=ReviewRequestInput(
                        customer_id=customer_id,
                        order_id=order.id,
                        entered_at=at,
                        entry_event_id=message_id,
                        spec=self._spec(session, "review_request", customer_id),
                        timezone=timezone,
                        expected_delivery_at=at + review.expected_delivery,
                    ),
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
                StartJourney(
                    journey="replenishment",
                    workflow_id=replenishment_id(customer_id, key),
                    customer_id=customer_id,
                    input=ReplenishmentInput(
                        customer_id=customer_id,
                        key=key,
                        product_id=product.id,
                        order_id=order.id,
                        entered_at=at,
                        entry_event_id=message_id,
                        due_at=due_at,
                        spec=self._spec(session, "replenishment", customer_id),
                        timezone=timezone,
                    ),
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
        if _ran_before(session, customer_id, review_request_id(order.id)):
            return []  # asked already: a later delivery report moves nothing
        return [
            StartJourney(
                journey="review_request",
                workflow_id=review_request_id(order.id),
                customer_id=customer_id,
                input=ReviewRequestInput(
                    customer_id=customer_id,
                    order_id=order.id,
                    entered_at=delivered_at,
                    entry_event_id=message_id,
                    spec=self._spec(session, "review_request", customer_id),
                    timezone=_timezone(session, customer_id),
                ),
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
            StartJourney(
                journey="welcome",
                workflow_id=welcome_id(customer_id),
                customer_id=customer_id,
                input=WelcomeInput(
                    customer_id=customer_id,
                    entered_at=at,
                    entry_event_id=event.message_id or "",
                    spec=self._spec(session, "welcome", customer_id),
                    timezone=customer.timezone,
                ),
                once=True,
            )
        ]


async def deliver(client: Client, route: Route, *, task_queue: str) -> None:
    """Hand one route to Temporal: idempotent, so a retried event does nothing twice.

    Raises:
        RPCError: Temporal refused or is unreachable (the intake answers 503 or 4xx).
    """
    if isinstance(route, StartJourney):
        workflow = registry.journey(route.journey).workflow
        try:
            await client.start_workflow(
                workflow.run,
                route.input,
                id=route.workflow_id,
                task_queue=task_queue,
                # A running journey takes the signal; otherwise a new one starts with it.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=(
                    WorkflowIDReusePolicy.REJECT_DUPLICATE
                    if route.once
                    else WorkflowIDReusePolicy.ALLOW_DUPLICATE
                ),
                start_signal=route.signal,
                start_signal_args=[route.signal_arg] if route.signal else [],
                static_summary=f"{workflow.title} · customer {route.customer_id}",
                search_attributes=journey_attributes(route.journey, route.customer_id),
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            if not route.once:
                raise
            # Used before and closed: once ever is the answer.
        return
    handle = client.get_workflow_handle(route.workflow_id)
    try:
        await handle.signal(
            "exit",
            JourneyExit(reason=route.reason, at=route.at, ref=route.ref),
            rpc_timeout=RPC_TIMEOUT,
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise  # NOT_FOUND: no journey running, nothing to end


def replenishment_key(match: str, product: Product) -> str | None:
    """What a repurchase of ``product`` is matched on; None when its category is unknown."""
    if match == "category":
        return f"category:{product.category}" if product.category else None
    return product.id


def journeys_of(
    session: Session, customer_id: str, now: datetime, *, match: str | None = None
) -> dict[str, list[str]]:
    """Every workflow ID a journey of this customer may run under, by journey name.

    The one-per-customer journeys by their IDs; the journeys keyed by order or product
    from the customer's recent orders (``match``: the replenishment's; None for both
    kinds of key). An unsubscribe ends them all; the customer card lists them.
    """
    ids = {name: [workflow_id] for name, workflow_id in customer_journey_ids(customer_id).items()}
    orders = list(
        session.scalars(
            select(Order)
            .where(
                Order.customer_id == customer_id, Order.placed_at >= now - ORDER_JOURNEYS_HORIZON
            )
            .order_by(Order.placed_at.desc())
            .options(selectinload(Order.lines))
        )
    )
    for per_order in keyed_by("order"):
        ids[per_order.name] = [per_order.workflow_id(order.id) for order in orders]
    per_product = keyed_by("product")
    if per_product:
        # A replenishment counts from an order as old as the longest cycle a product may have.
        product_ids = set(
            session.scalars(
                select(OrderLine.product_id)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.customer_id == customer_id, Order.placed_at >= now - LONGEST_CYCLE)
                .distinct()
            )
        )
        products = list(session.scalars(select(Product).where(Product.id.in_(product_ids))))
        matches = [match] if match else ["product", "category"]
        keys = {replenishment_key(m, product) for product in products for m in matches}
        for keyed in per_product:
            ids[keyed.name] = sorted(keyed.workflow_id(customer_id, k) for k in keys if k)
    ids.update(lapsed_journeys(session, customer_id, now))
    # The sweep starts a greeting the day before its day (on 31 December, next year's), and
    # a 31 December greeting behind UTC is still waiting on 1 January UTC (last year's).
    years = (now.year - 1, now.year, now.year + 1)
    for occasion in keyed_by("occasion"):
        ids[occasion.name] = [
            workflow_id(customer_id, y)
            for y in years
            for workflow_id in occasion.sweep_kinds.values()
        ]
    return ids


def lapsed_journeys(session: Session, customer_id: str, now: datetime) -> dict[str, list[str]]:
    """The customer's reactivations and win-backs that may still run, by journey name.

    Keyed by the day of the last order, their IDs cannot be made from the customer alone:
    the sweep's entries name them (one indexed query on customer and entry time).
    """
    rows = session.execute(
        select(JourneyEntry.journey, JourneyEntry.workflow_id).where(
            JourneyEntry.customer_id == customer_id,
            JourneyEntry.entered_at >= now - ORDER_JOURNEYS_HORIZON,
            JourneyEntry.journey.in_(LAPSED_JOURNEYS),
        )
    )
    ids: dict[str, list[str]] = {journey: [] for journey in LAPSED_JOURNEYS}
    for journey, workflow_id in rows:
        ids[journey].append(workflow_id)
    return ids


def journey_ids(
    sessions: sessionmaker[Session], customer_id: str, now: datetime, *, match: str | None = None
) -> dict[str, list[str]]:
    """:func:`journeys_of` in a session of its own (for ``asyncio.to_thread``)."""
    with sessions() as session:
        return journeys_of(session, customer_id, now, match=match)


def anonymous_ids_of(event: SegmentEvent) -> list[str]:
    """The anonymous ids a call ties to its userId (an alias names the old one previousId)."""
    ids = [event.anonymous_id, event.previous_id if event.type == "alias" else None]
    return list(dict.fromkeys(i for i in ids if i and i != event.user_id))


def _ran_before(session: Session, customer_id: str, workflow_id: str) -> bool:
    """Whether a once-ever journey ID has ledger rows: Temporal forgets a closed run after
    the namespace's retention, and an order re-reported after that must not start it over."""
    row = session.scalar(
        select(EmailSend.id)
        .where(EmailSend.customer_id == customer_id, EmailSend.workflow_id == workflow_id)
        .limit(1)
    )
    return row is not None


def _viewed_product(payload: dict[str, Any]) -> str | None:
    """The product id of a stored ``Product Viewed`` (validated when it came in)."""
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return None
    return ProductProps.model_validate(properties).product_id


def _timezone(session: Session, customer_id: str) -> str | None:
    customer = lookup(session, Customer, customer_id)
    return customer.timezone if customer else None


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
