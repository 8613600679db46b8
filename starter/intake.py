"""Event intake: store a Segment event once, update the shop's tables, route it to journeys.

The same code serves the Python call and the HTTP API. An event counts as accepted
only when it is in the store *and* Temporal has taken what it starts or signals;
``routed_at`` records the second half, so a retry of an event whose routing failed
routes it again, and a retry of a routed one changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starter.events import (
    EventError,
    OrderProps,
    ProductProps,
    SegmentEvent,
    parse_event,
)
from starter.routing import Router, anonymous_ids_of
from starter.rows import lookup, prefetch, remember
from starter.starting import Route, StartJourney, deliver
from triggermail.birthdays import month_day, parse_birthday
from triggermail.journeys import JourneysConfig
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
    new_id,
    order_stats,
    utcnow,
)

log = logging.getLogger(__name__)

EARLY_DELIVERIES_READ = 100
"""A customer's latest delivery reports, read to find one that came before its order."""
DELIVERY_CLOCK_SLACK = timedelta(days=1)
TRANSIENT_STORE_ERRORS = (DBAPIError, DisconnectionError, PoolTimeout)
"""Store failures a retry can cure: down, locked, overloaded, not migrated yet. A value the
database refuses (DataError) is one event's fault and is refused with that event instead."""
EVENT_FAULTS = (StatementError, ValueError, ArithmeticError, RecursionError)
"""What one event's values can make storing it raise (besides DataError: a value a column's
type refuses before the database sees it). Never retried; the event is refused alone."""


class IntakeUnavailable(Exception):
    """The store or Temporal cannot take the event now; the caller should retry (HTTP 503)."""


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
        self.router = Router(journeys, clock)
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
                    target = result.started if isinstance(route, StartJourney) else result.signalled
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
            except TRANSIENT_STORE_ERRORS:
                raise
            except EVENT_FAULTS:
                break
        # One event holds a value the database will not take, or keeps colliding: apply each
        # alone, so that event is refused and the others still go in.
        return [self._store_alone(event, received) for event in events]

    def _store_alone(self, event: SegmentEvent, received: datetime) -> _Stored | EventError:
        reason: Exception | None = None
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
            except TRANSIENT_STORE_ERRORS:
                raise
            except EVENT_FAULTS as err:
                reason = err
                break
        assert reason is not None
        # The driver's words stay in the log: they describe our schema, not the client's event.
        log.warning("event %s refused by the store: %s", event.message_id, _db_reason(reason))
        return EventError([("", "the store cannot hold one of its values")])

    def _store_in(
        self, session: Session, events: Sequence[SegmentEvent], received: datetime
    ) -> list[_Stored]:
        ids = [event.message_id for event in events if event.message_id is not None]
        known: dict[str, Event] = {}
        for chunk in range(0, len(ids), 500):
            rows = session.scalars(
                select(Event).where(Event.message_id.in_(ids[chunk : chunk + 500]))
            )
            known.update((row.message_id, row) for row in rows)
        prefetch(session, [event for event in events if event.message_id not in known], received)
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
            routes = self.router.routes(session, event, row.timestamp, row.customer_id)
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
        routes = self.router.routes(session, event, happened, customer_id)
        if not routes:
            row.routed_at = self.clock()
        return _Stored(message_id, fresh=True, routes=routes)

    # -- identity ------------------------------------------------------------------------

    def _owner(self, session: Session, event: SegmentEvent, at: datetime) -> str | None:
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
            product = _upsert_product(
                session, event.product(), self.journeys.shop.currency, self.clock()
            )
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
        product = _upsert_product(session, props, self.journeys.shop.currency, self.clock())
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
                    session, item, props.currency or self.journeys.shop.currency, self.clock()
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
        order.currency = props.currency or self.journeys.shop.currency
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

    # -- routing -------------------------------------------------------------------------

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
                        await deliver(self.client, route, task_queue=self.task_queue)
                except RPCError as err:
                    failed[index] = err
                    if _transient(err):
                        # The journey's later events must not overtake this one.
                        for later, _ in routes[position + 1 :]:
                            failed.setdefault(later, err)
                        return

        await asyncio.gather(*(in_order(routes) for routes in journeys.values()))
        return failed


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


def _transient(err: RPCError) -> bool:
    # INVALID_ARGUMENT will fail the same way on every retry; anything else (unreachable,
    # overloaded, timed out, misconfigured) may pass later, so the client must retry.
    return err.status != RPCStatusCode.INVALID_ARGUMENT


def _db_reason(err: Exception) -> str:
    orig = getattr(err, "orig", None)
    return str(orig or err).strip().splitlines()[0]


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


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
        _dialect_insert(session)(Customer)
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
            _dialect_insert(session)(Product)
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
