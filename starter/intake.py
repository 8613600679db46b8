"""Event intake: store a Segment event once, update the shop's tables, route it to journeys.

The same code serves the Python call and the HTTP API. An event counts as accepted
only when it is in the store *and* Temporal has taken what it starts or signals;
``routed_at`` records the second half, so a retry of an event whose routing failed
routes it again, and a retry of a routed one changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from starter.events import (
    ORDER_EVENTS,
    PRODUCT_EVENTS,
    EventError,
    ProductProps,
    SegmentEvent,
    parse_event,
)
from starter.ids import abandoned_cart_id, welcome_id
from triggermail.journeys import JourneysConfig
from triggermail.store import (
    Cart,
    CartLine,
    Customer,
    EmailSend,
    Event,
    Identity,
    Order,
    OrderLine,
    Product,
    new_id,
    utcnow,
)
from workflows.abandoned_cart import AbandonedCartWorkflow
from workflows.search_attributes import CUSTOMER_ID, JOURNEY
from workflows.types import AbandonedCartInput, CartActivity, JourneyExit, WelcomeInput
from workflows.welcome import WelcomeWorkflow

log = logging.getLogger(__name__)

CART_EVENTS = frozenset({"Product Added", "Product Removed", "Checkout Started"})
RPC_TIMEOUT = timedelta(seconds=10)
"""A Temporal call slower than this is answered 503, well before an SDK's own timeout."""
TRANSIENT_STORE_ERRORS = (DBAPIError, DisconnectionError, PoolTimeout)
"""Store failures a retry can cure: down, locked, overloaded, not migrated yet. A value the
database refuses (DataError) is one event's fault and is refused with that event instead."""


class IntakeUnavailable(Exception):
    """The store or Temporal cannot take the event now; the caller should retry (HTTP 503)."""


@dataclass(frozen=True)
class EnterCartJourney:
    customer_id: str
    cart_id: str
    at: datetime
    event_id: str
    timezone: str | None = None

    @property
    def workflow_id(self) -> str:
        return abandoned_cart_id(self.customer_id)


@dataclass(frozen=True)
class EnterWelcome:
    customer_id: str
    at: datetime
    event_id: str
    timezone: str | None = None

    @property
    def workflow_id(self) -> str:
        return welcome_id(self.customer_id)


@dataclass(frozen=True)
class ExitJourney:
    workflow_id: str
    reason: str
    at: datetime
    ref: str | None = None


Enter = EnterCartJourney | EnterWelcome
Route = Enter | ExitJourney


@dataclass
class IntakeResult:
    message_id: str
    duplicate: bool = False
    started: list[str] = field(default_factory=list)
    """Journeys signal-with-started (started, or signalled when already running)."""
    signalled: list[str] = field(default_factory=list)
    """Journeys sent an exit signal (whether or not one was running)."""


class Intake:
    """Takes Segment events from any door (Python call, HTTP) through one path."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        client: Client,
        journeys: JourneysConfig,
        task_queue: str,
        clock: Callable[[], datetime] = utcnow,
        routes_in_flight: int = 64,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.client = client
        self.journeys = journeys
        self.task_queue = task_queue
        self._in_flight = asyncio.Semaphore(routes_in_flight)

    async def submit(
        self, event: SegmentEvent | Mapping[str, Any], *, received_at: datetime | None = None
    ) -> IntakeResult:
        """Store and route one event; the same ``messageId`` twice changes nothing.

        Raises:
            EventError: the event is malformed (names the field), or the store or Temporal
                refused it for good.
            IntakeUnavailable: the store or Temporal is down; nothing was half-done
                that a retry would double.
        """
        parsed = event if isinstance(event, SegmentEvent) else parse_event(event)
        if missing := parsed.missing():
            raise EventError(missing)
        (outcome,) = await self.submit_many([parsed], received_at=received_at)
        if isinstance(outcome, EventError):
            raise outcome
        return outcome

    async def submit_many(
        self, events: Sequence[SegmentEvent], *, received_at: datetime | None = None
    ) -> list[IntakeResult | EventError]:
        """Store events in order in one transaction, then route them to Temporal together.

        Journeys of different customers are started and signalled concurrently; the events
        of one journey reach it in the order given. Each outcome is the event's result, or
        the reason the store or Temporal refused it for good (a value it cannot hold).

        Raises:
            IntakeUnavailable: the store or Temporal is down. What was done stays done and
                is recorded, so a retry of the same events routes only what is left.
        """
        for event in events:
            if event.message_id is None:
                raise ValueError("events must be parsed (parse_event) before they are submitted")
        received = received_at or self.clock()
        try:
            stored = await asyncio.to_thread(self._store_all, events, received)
        except TRANSIENT_STORE_ERRORS as err:
            raise IntakeUnavailable(f"store unavailable: {_db_reason(err)}") from err

        failed = await self._route_all(stored)
        routed = [
            s.message_id
            for i, s in enumerate(stored)
            if isinstance(s, _Stored) and s.routes and i not in failed
        ]
        if routed:
            try:
                await asyncio.to_thread(self._mark_routed, routed)
            except TRANSIENT_STORE_ERRORS as err:
                # Routing is idempotent, so a retry that routes again is harmless.
                raise IntakeUnavailable(f"store unavailable: {_db_reason(err)}") from err
        unavailable = [err for err in failed.values() if _transient(err)]
        if unavailable:
            raise IntakeUnavailable(f"Temporal unavailable: {unavailable[0].message}")

        outcomes: list[IntakeResult | EventError] = []
        for i, s in enumerate(stored):
            if isinstance(s, EventError):
                outcomes.append(s)
            elif i in failed:
                outcomes.append(EventError([("", f"Temporal refused it: {failed[i].message}")]))
            else:
                result = IntakeResult(message_id=s.message_id, duplicate=not s.fresh)
                for route in s.routes:
                    target = result.started if isinstance(route, Enter) else result.signalled
                    target.append(route.workflow_id)
                outcomes.append(result)
        return outcomes

    # -- store ---------------------------------------------------------------------------

    def _store_all(
        self, events: Sequence[SegmentEvent], received: datetime
    ) -> list[_Stored | EventError]:
        """Apply all events in one transaction (one commit, the fast path)."""
        for _attempt in range(3):
            try:
                with self.session_factory() as session:
                    out: list[_Stored | EventError] = list(
                        self._store_in(session, events, received)
                    )
                    session.commit()
                    return out
            except IntegrityError:
                # A concurrent delivery of the same event, or of another event creating the
                # same customer, product or identity, won the race: look again.
                continue
            except DataError:
                break
        # One event holds a value the database will not take, or keeps colliding: apply each
        # alone, so that event is refused and the others still go in.
        return [self._store_alone(event, received) for event in events]

    def _store_alone(self, event: SegmentEvent, received: datetime) -> _Stored | EventError:
        reason: DBAPIError | None = None
        for _attempt in range(3):
            try:
                with self.session_factory() as session:
                    (out,) = self._store_in(session, [event], received)
                    session.commit()
                    return out
            except IntegrityError as err:
                reason = err
                continue
            except DataError as err:
                reason = err
                break
        assert reason is not None
        return EventError([("", f"the store cannot hold it: {_db_reason(reason)}")])

    def _store_in(
        self, session: Session, events: Sequence[SegmentEvent], received: datetime
    ) -> list[_Stored]:
        ids = [event.message_id for event in events if event.message_id]
        known: dict[str, Event] = {}
        for chunk in range(0, len(ids), 500):
            rows = session.scalars(
                select(Event).where(Event.message_id.in_(ids[chunk : chunk + 500]))
            )
            known.update((row.message_id, row) for row in rows)
        _prefetch(session, [event for event in events if event.message_id not in known])
        seen: set[str] = set()
        return [self._store_one(session, event, received, known, seen) for event in events]

    def _store_one(
        self,
        session: Session,
        event: SegmentEvent,
        received: datetime,
        known: dict[str, Event],
        seen: set[str],
    ) -> _Stored:
        message_id = event.message_id
        assert message_id is not None
        if message_id in seen:
            return _Stored(message_id, fresh=False, routes=[])
        seen.add(message_id)
        row = known.get(message_id)
        if row is not None:
            if row.routed_at is not None:
                return _Stored(message_id, fresh=False, routes=[])
            # Stored before, but Temporal never confirmed: route it from the store as it is now.
            routes = self._routes(session, event, row.timestamp, row.customer_id)
            if not routes:
                row.routed_at = self.clock()
            return _Stored(message_id, fresh=False, routes=routes)

        happened = event.happened_at(received)
        customer_id = self._owner(session, event, happened)
        row = Event(
            message_id=message_id,
            type=event.type,
            event=event.event,
            user_id=event.user_id,
            anonymous_id=event.anonymous_id,
            customer_id=customer_id,
            timestamp=happened,
            received_at=received,
            payload=event.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        session.add(row)
        self._apply(session, event, happened, customer_id)
        routes = self._routes(session, event, happened, customer_id)
        if not routes:
            row.routed_at = self.clock()
        return _Stored(message_id, fresh=True, routes=routes)

    # -- identity ------------------------------------------------------------------------

    def _owner(self, session: Session, event: SegmentEvent, at: datetime) -> str | None:
        """Whose event this is, linking its anonymous ids to the customer when it names one."""
        if event.user_id:
            _ensure_customer(session, event.user_id)
            for anonymous_id in _anonymous_ids(event):
                _link(session, anonymous_id, event.user_id, at, event.message_id or "")
            return event.user_id
        if event.anonymous_id:
            identity = _lookup(session, Identity, event.anonymous_id)
            return identity.customer_id if identity is not None else None
        return None

    def _mark_routed(self, message_ids: list[str]) -> None:
        with self.session_factory() as session:
            for chunk in range(0, len(message_ids), 500):
                # No objects of this session to keep in step: skip the ORM's evaluation.
                session.execute(
                    update(Event)
                    .where(
                        Event.message_id.in_(message_ids[chunk : chunk + 500]),
                        Event.routed_at.is_(None),
                    )
                    .values(routed_at=self.clock())
                    .execution_options(synchronize_session=False)
                )
            session.commit()

    # -- the shop's tables ---------------------------------------------------------------

    def _apply(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str | None
    ) -> None:
        customer = session.get(Customer, customer_id) if customer_id else None
        # Traits describe whoever the call names; a linked device's anonymous call does not
        # speak for the customer (a shared computer).
        if (
            customer is not None
            and event.user_id
            and (event.type == "identify" or event.context.get("traits"))
        ):
            _apply_traits(customer, event)
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
        elif name in ("Order Refunded", "Order Cancelled"):
            order = _lookup(session, Order, event.order().order_id)
            if order is not None:
                order.status = "refunded" if name == "Order Refunded" else "cancelled"
        elif name in ("Product Viewed", "Product Reviewed"):
            _upsert_product(session, event.product(), self.journeys.shop.currency)

    def _cart(self, session: Session, owner: _Owner, cart_id: str | None, at: datetime) -> Cart:
        """The cart an event speaks of: by id, else the owner's open cart, else a new one."""
        cart = None
        if cart_id:
            cart = _lookup(session, Cart, cart_id, options=[selectinload(Cart.lines)])
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
            _remember(session, Cart, cart.id, cart)
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
        product = _upsert_product(session, props, self.journeys.shop.currency)
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
        cart.currency = props.currency or cart.currency or self.journeys.shop.currency
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
                    session, item, props.currency or self.journeys.shop.currency
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
        cart.currency = props.currency or cart.currency or self.journeys.shop.currency
        cart.last_activity_at = max(cart.last_activity_at, at)

    def _order_completed(
        self, session: Session, owner: _Owner, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.order()
        assert props.order_id is not None  # parse_event requires it
        order = _lookup(session, Order, props.order_id)
        if order is None:
            order = Order(id=props.order_id, placed_at=at, lines=[])
            session.add(order)
            _remember(session, Order, order.id, order)
        order.customer_id = order.customer_id or owner.customer_id
        order.anonymous_id = order.anonymous_id or owner.anonymous_id
        order.status = "completed"
        order.total = props.total if props.total is not None else props.revenue
        order.revenue = props.revenue if props.revenue is not None else props.total
        order.currency = props.currency or self.journeys.shop.currency
        order.coupon = props.coupon
        order.cart_id = props.cart_id
        if props.products:
            order.lines = []
            session.flush()
            for item in props.products:
                product = _upsert_product(session, item, order.currency)
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

    # -- routing -------------------------------------------------------------------------

    def _routes(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str | None
    ) -> list[Route]:
        """What the stored event asks of Temporal, read from the store as it now is."""
        if customer_id is None:
            return []  # a visitor nobody has named yet: no one to write to
        return [
            *self._cart_routes(session, event, at, customer_id),
            *self._welcome_routes(session, event, at, customer_id),
        ]

    def _welcome_routes(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        """A sign-up, or an ``identify`` of someone who can be mailed: welcome them, once."""
        journey = self.journeys.welcome
        if journey is None or not journey.enabled:
            return []
        if not (event.type == "identify" or (event.type == "track" and event.event == "Signed Up")):
            return []
        customer = _lookup(session, Customer, customer_id)
        if customer is None or not customer.email or not customer.marketing_consent:
            # Starting now would end at the send guard and use up the one welcome; the
            # identify that brings the address and consent starts it instead.
            return []
        if self.clock() - at > journey.horizon():
            return []  # history being imported: a welcome years late is no welcome
        # Temporal refuses a second start of the welcome ID while it remembers the first;
        # the ledger remembers beyond the namespace's retention.
        welcomed = session.scalar(
            select(EmailSend.id)
            .where(EmailSend.customer_id == customer_id, EmailSend.journey == "welcome")
            .limit(1)
        )
        if welcomed is not None:
            return []
        return [EnterWelcome(customer_id, at, event.message_id or "", customer.timezone)]

    def _cart_routes(
        self, session: Session, event: SegmentEvent, at: datetime, customer_id: str
    ) -> list[Route]:
        name = event.event if event.type == "track" else None
        journey = self.journeys.abandoned_cart
        if name == "Order Completed":
            return [
                ExitJourney(
                    abandoned_cart_id(customer_id), "purchase", at, ref=event.order().order_id
                )
            ]
        if not journey.enabled:
            return []
        if name in CART_EVENTS:
            cart_id = (event.order() if name == "Checkout Started" else event.product()).cart_id
            cart = self._cart_for_route(session, customer_id, cart_id)
            if cart is None or self.clock() - at > journey.horizon():
                return []  # history being imported: its journey would already be over
            if cart.status == "emptied":
                return [
                    ExitJourney(abandoned_cart_id(customer_id), "cart_emptied", at, ref=cart.id)
                ]
            if cart.status != "open" or not cart.lines:
                return []
            return [_enter(session, customer_id, cart, at, event)]
        anonymous_ids = _anonymous_ids(event) if event.user_id else []
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
            if self.clock() - cart.last_activity_at > journey.horizon():
                return []
            return [_enter(session, customer_id, cart, cart.last_activity_at, event)]
        return []

    def _cart_for_route(
        self, session: Session, customer_id: str, cart_id: str | None
    ) -> Cart | None:
        if cart_id:
            return _lookup(session, Cart, cart_id, options=[selectinload(Cart.lines)])
        return session.scalar(
            select(Cart)
            .where(Cart.customer_id == customer_id)
            .order_by(Cart.last_activity_at.desc())
            .options(selectinload(Cart.lines))
            .limit(1)
        )

    async def _route_all(self, stored: list[_Stored | EventError]) -> dict[int, RPCError]:
        """Route every stored event; returns the events Temporal did not take, by index."""
        journeys: dict[str, list[tuple[int, Route]]] = {}
        for index, outcome in enumerate(stored):
            if isinstance(outcome, _Stored):
                for route in outcome.routes:
                    journeys.setdefault(route.workflow_id, []).append((index, route))
        failed: dict[int, RPCError] = {}

        async def in_order(routes: list[tuple[int, Route]]) -> None:
            for position, (index, route) in enumerate(routes):
                if index in failed:
                    continue
                try:
                    async with self._in_flight:
                        await self._route(route)
                except RPCError as err:
                    failed[index] = err
                    if _transient(err):
                        # The journey's later events must not overtake this one.
                        for later, _ in routes[position + 1 :]:
                            failed.setdefault(later, err)
                        return

        await asyncio.gather(*(in_order(routes) for routes in journeys.values()))
        return failed

    async def _route(self, route: Route) -> None:
        if isinstance(route, EnterWelcome):
            await self._start_welcome(route)
            return
        if isinstance(route, EnterCartJourney):
            await self.client.start_workflow(
                AbandonedCartWorkflow.run,
                AbandonedCartInput(
                    customer_id=route.customer_id,
                    cart_id=route.cart_id,
                    entered_at=route.at,
                    entry_event_id=route.event_id,
                    spec=self.journeys.spec("abandoned_cart"),
                    timezone=route.timezone,
                ),
                id=route.workflow_id,
                task_queue=self.task_queue,
                # A running journey takes the signal; otherwise a new one starts with it.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal="cart_activity",
                start_signal_args=[CartActivity(cart_id=route.cart_id, at=route.at)],
                static_summary=f"Abandoned cart · customer {route.customer_id}",
                search_attributes=_journey_attributes("abandoned_cart", route.customer_id),
                rpc_timeout=RPC_TIMEOUT,
            )
            return
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(route.workflow_id)
        try:
            await handle.signal(
                AbandonedCartWorkflow.exit,
                JourneyExit(reason=route.reason, at=route.at, ref=route.ref),
                rpc_timeout=RPC_TIMEOUT,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise  # NOT_FOUND: no journey running, nothing to end

    async def _start_welcome(self, route: EnterWelcome) -> None:
        # One welcome per customer ever: a re-identify or a second sign-up finds the ID
        # running or used (WorkflowAlreadyStartedError), and that is the answer.
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await self.client.start_workflow(
                WelcomeWorkflow.run,
                WelcomeInput(
                    customer_id=route.customer_id,
                    entered_at=route.at,
                    entry_event_id=route.event_id,
                    spec=self.journeys.spec("welcome"),
                    timezone=route.timezone,
                ),
                id=route.workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"Welcome · customer {route.customer_id}",
                search_attributes=_journey_attributes("welcome", route.customer_id),
                rpc_timeout=RPC_TIMEOUT,
            )


@dataclass(frozen=True)
class _Owner:
    """Who a cart or order belongs to: a customer, or an anonymous visitor not yet named."""

    customer_id: str | None
    anonymous_id: str | None

    def owns(self, model: type[Cart] | type[Order]) -> ColumnElement[bool]:
        if self.customer_id is not None:
            return model.customer_id == self.customer_id
        return and_(model.anonymous_id == self.anonymous_id, model.customer_id.is_(None))


@dataclass
class _Stored:
    message_id: str
    fresh: bool
    routes: list[Route]
    """What Temporal still has to take for this event."""


def _anonymous_ids(event: SegmentEvent) -> list[str]:
    """The anonymous ids a call ties to its userId (an alias names the old one previousId)."""
    ids = [event.anonymous_id, event.previous_id if event.type == "alias" else None]
    return list(dict.fromkeys(i for i in ids if i and i != event.user_id))


def _link(
    session: Session, anonymous_id: str, customer_id: str, at: datetime, message_id: str
) -> None:
    identity = _lookup(session, Identity, anonymous_id)
    if identity is None:
        identity = Identity(
            anonymous_id=anonymous_id, customer_id=customer_id, linked_at=at, message_id=message_id
        )
        session.add(identity)
        _remember(session, Identity, anonymous_id, identity)
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


_KNOWN = "triggermail.known"
_Row = TypeVar("_Row", Customer, Product, Cart, Order, Identity)


def _prefetch(session: Session, events: Sequence[SegmentEvent]) -> None:
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

    _load(session, Customer, customers)
    _load(session, Identity, anonymous)
    _load(session, Cart, carts, selectinload(Cart.lines))
    _load(session, Order, orders, selectinload(Order.lines))
    missing = _load(session, Product, set(products))
    now = utcnow()
    for customer_id in customers - _known(session, Customer):
        customer = Customer(
            id=customer_id, marketing_consent=False, traits={}, created_at=now, updated_at=now
        )
        session.add(customer)
        _remember(session, Customer, customer_id, customer)
    for product_id in missing:
        props = products[product_id]
        product = Product(id=product_id, name=props.name or product_id, updated_at=now)
        session.add(product)
        _remember(session, Product, product_id, product)
    # Rows that reference customers and products have no relationship to order the flush by.
    session.flush()


def _load(session: Session, model: type[_Row], keys: set[str], *options: Any) -> set[str]:
    """Remember the rows of ``model`` with these keys, and which are absent; returns those."""
    key = inspect(model).primary_key[0]
    ordered = sorted(keys)
    found: dict[str, Any] = {}
    for chunk in range(0, len(ordered), 500):
        statement = select(model).where(key.in_(ordered[chunk : chunk + 500])).options(*options)
        found.update((getattr(row, key.name), row) for row in session.scalars(statement))
    for value in ordered:
        _remember(session, model, value, found.get(value))
    return keys - found.keys()


def _known(session: Session, model: type[_Row]) -> set[str]:
    return {k for k, v in session.info.get(_KNOWN, {}).get(model, {}).items() if v is not None}


def _remember(session: Session, model: type[_Row], key: str, row: _Row | None) -> None:
    # Strong references too: the session's identity map alone would let them go.
    session.info.setdefault(_KNOWN, {}).setdefault(model, {})[key] = row


def _lookup(session: Session, model: type[_Row], key: str | None, **options: Any) -> _Row | None:
    """``session.get``, answered from what the batch prefetched (absent rows included)."""
    if key is None:
        return None
    known = session.info.get(_KNOWN, {}).get(model)
    if known is not None and key in known:
        row: _Row | None = known[key]
        return row
    return session.get(model, key, **options)


def _transient(err: RPCError) -> bool:
    # INVALID_ARGUMENT will fail the same way on every retry; anything else (unreachable,
    # overloaded, timed out, misconfigured) may pass later, so the client must retry.
    return err.status != RPCStatusCode.INVALID_ARGUMENT


def _db_reason(err: Exception) -> str:
    orig = getattr(err, "orig", None)
    return str(orig or err).strip().splitlines()[0]


def _journey_attributes(journey: str, customer_id: str) -> TypedSearchAttributes:
    """What a journey starts with, so operators find it by customer at once."""
    return TypedSearchAttributes(
        [SearchAttributePair(CUSTOMER_ID, customer_id), SearchAttributePair(JOURNEY, journey)]
    )


def _enter(
    session: Session, customer_id: str, cart: Cart, at: datetime, event: SegmentEvent
) -> EnterCartJourney:
    customer = session.get(Customer, customer_id)
    return EnterCartJourney(
        customer_id, cart.id, at, event.message_id or "", customer.timezone if customer else None
    )


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _ensure_customer(session: Session, customer_id: str) -> Customer:
    customer = _lookup(session, Customer, customer_id)
    if customer is not None:
        return customer
    # INSERT … ON CONFLICT DO NOTHING: two events of a new customer may race.
    session.execute(
        _dialect_insert(session)(Customer)
        .values(
            id=customer_id,
            marketing_consent=False,
            traits={},
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    customer = session.get(Customer, customer_id)
    assert customer is not None
    return customer


def _apply_traits(customer: Customer, event: SegmentEvent) -> None:
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
    known = {"email", "first_name", "firstName", "last_name", "lastName"}
    extra = {
        k: v for k, v in (traits.model_dump(mode="json", by_alias=False)).items() if v is not None
    }
    customer.traits = {
        **(customer.traits or {}),
        **{k: v for k, v in extra.items() if k not in known},
    }


def _upsert_product(session: Session, props: ProductProps, currency: str) -> Product | None:
    if not props.product_id:
        return None
    product = _lookup(session, Product, props.product_id)
    if product is None:
        session.execute(
            _dialect_insert(session)(Product)
            .values(id=props.product_id, name=props.name or props.product_id, updated_at=utcnow())
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
    return product
