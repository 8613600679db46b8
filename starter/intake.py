"""Event intake: store a Segment event once, update the shop's tables, route it to journeys.

The same code serves the Python call and the HTTP API. An event counts as accepted
only when it is in the store *and* Temporal has taken what it starts or signals;
``routed_at`` records the second half, so a retry of an event whose routing failed
routes it again, and a retry of a routed one changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from starter.events import ProductProps, SegmentEvent, parse_event
from starter.ids import abandoned_cart_id
from triggermail.journeys import JourneysConfig
from triggermail.store import (
    Cart,
    CartLine,
    Customer,
    Event,
    Order,
    OrderLine,
    Product,
    new_id,
    utcnow,
)
from workflows.abandoned_cart import AbandonedCartWorkflow
from workflows.types import AbandonedCartInput, CartActivity, JourneyExit

log = logging.getLogger(__name__)

CART_EVENTS = frozenset({"Product Added", "Product Removed", "Checkout Started"})


class IntakeUnavailable(Exception):
    """The store or Temporal cannot take the event now; the caller should retry (HTTP 503)."""


@dataclass(frozen=True)
class EnterCartJourney:
    customer_id: str
    cart_id: str
    at: datetime
    event_id: str

    @property
    def workflow_id(self) -> str:
        return abandoned_cart_id(self.customer_id)


@dataclass(frozen=True)
class ExitJourney:
    workflow_id: str
    reason: str
    at: datetime
    ref: str | None = None


Route = EnterCartJourney | ExitJourney


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
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.client = client
        self.journeys = journeys
        self.task_queue = task_queue

    async def submit(
        self, event: SegmentEvent | Mapping[str, Any], *, received_at: datetime | None = None
    ) -> IntakeResult:
        """Store and route one event; the same ``messageId`` twice changes nothing.

        Raises:
            EventError: the event is malformed (names the field).
            IntakeUnavailable: the store or Temporal is down; nothing was half-done
                that a retry would double.
        """
        parsed = event if isinstance(event, SegmentEvent) else parse_event(event)
        try:
            fresh, routes = await asyncio.to_thread(self._store, parsed, received_at)
        except (OperationalError, DBAPIError) as err:
            raise IntakeUnavailable(f"store unavailable: {err.orig or err}") from err
        assert parsed.message_id is not None
        result = IntakeResult(message_id=parsed.message_id, duplicate=not fresh)
        if routes is None:
            return result
        try:
            for route in routes:
                await self._route(route)
                target = result.started if isinstance(route, EnterCartJourney) else result.signalled
                target.append(route.workflow_id)
        except RPCError as err:
            raise IntakeUnavailable(f"Temporal unavailable: {err.message}") from err
        try:
            await asyncio.to_thread(self._mark_routed, parsed.message_id)
        except (OperationalError, DBAPIError) as err:
            # Routing is idempotent, so a retry that routes again is harmless.
            raise IntakeUnavailable(f"store unavailable: {err.orig or err}") from err
        return result

    # -- store ---------------------------------------------------------------------------

    def _store(
        self, event: SegmentEvent, received_at: datetime | None
    ) -> tuple[bool, list[Route] | None]:
        """Apply the event in one transaction; returns (new?, routes or None if already routed)."""
        assert event.message_id is not None
        received = received_at or self.clock()
        happened = event.happened_at(received)
        for attempt in range(3):
            with self.session_factory() as session:
                existing = session.scalar(select(Event).where(Event.message_id == event.message_id))
                if existing is not None:
                    if existing.routed_at is not None:
                        return False, None
                    return False, self._routes(session, event, existing.timestamp)
                session.add(
                    Event(
                        message_id=event.message_id,
                        type=event.type,
                        event=event.event,
                        user_id=event.user_id,
                        anonymous_id=event.anonymous_id,
                        timestamp=happened,
                        received_at=received,
                        payload=event.model_dump(mode="json", by_alias=True, exclude_none=True),
                    )
                )
                try:
                    session.flush()
                    self._apply(session, event, happened)
                    routes = self._routes(session, event, happened)
                    session.commit()
                    return True, routes
                except IntegrityError:
                    # A concurrent delivery of the same event, or of another event creating
                    # the same customer or product, won the race: look again.
                    session.rollback()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _mark_routed(self, message_id: str) -> None:
        with self.session_factory() as session:
            session.execute(
                update(Event)
                .where(Event.message_id == message_id, Event.routed_at.is_(None))
                .values(routed_at=self.clock())
            )
            session.commit()

    def _apply(self, session: Session, event: SegmentEvent, at: datetime) -> None:
        if not event.user_id:
            return  # anonymous: kept in events until an identify links it
        customer = _ensure_customer(session, event.user_id)
        if event.type == "identify" or event.context.get("traits"):
            _apply_traits(customer, event)
        if event.type != "track":
            return
        name = event.event
        if name == "Product Added":
            self._product_added(session, customer, event, at)
        elif name == "Product Removed":
            self._product_removed(session, customer, event, at)
        elif name == "Checkout Started":
            self._checkout_started(session, customer, event, at)
        elif name == "Order Completed":
            self._order_completed(session, customer, event, at)
        elif name in ("Order Refunded", "Order Cancelled"):
            order = session.get(Order, event.order().order_id)
            if order is not None:
                order.status = "refunded" if name == "Order Refunded" else "cancelled"
        elif name in ("Product Viewed", "Product Reviewed"):
            _upsert_product(session, event.product(), self.journeys.shop.currency)

    def _cart(
        self, session: Session, customer: Customer, cart_id: str | None, at: datetime
    ) -> Cart:
        """The cart an event speaks of: by id, else the customer's open cart, else a new one."""
        cart = None
        if cart_id:
            cart = session.get(Cart, cart_id, options=[selectinload(Cart.lines)])
        else:
            cart = session.scalar(
                select(Cart)
                .where(Cart.customer_id == customer.id, Cart.status == "open")
                .order_by(Cart.last_activity_at.desc())
                .limit(1)
            )
        if cart is None:
            cart = Cart(
                id=cart_id or new_id(),
                customer_id=customer.id,
                status="open",
                last_activity_at=at,
                lines=[],
            )
            session.add(cart)
        elif cart.status != "open" and at > cart.last_activity_at:
            # A shop that reuses cart ids: a change after the order starts a fresh cart.
            cart.status, cart.lines = "open", []
        return cart

    def _product_added(
        self, session: Session, customer: Customer, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.product()
        product = _upsert_product(session, props, self.journeys.shop.currency)
        if product is None:
            return
        cart = self._cart(session, customer, props.cart_id, at)
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
        self, session: Session, customer: Customer, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.product()
        cart = self._cart(session, customer, props.cart_id, at)
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
        self, session: Session, customer: Customer, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.order()
        cart = self._cart(session, customer, props.cart_id, at)
        if cart.status != "open":
            return
        if props.products:
            # The checkout is the cart as the customer last saw it: it replaces the lines.
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
        self, session: Session, customer: Customer, event: SegmentEvent, at: datetime
    ) -> None:
        props = event.order()
        assert props.order_id is not None  # parse_event requires it
        order = session.get(Order, props.order_id)
        if order is None:
            order = Order(id=props.order_id, customer_id=customer.id, placed_at=at, lines=[])
            session.add(order)
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
            .where(
                Cart.customer_id == customer.id,
                Cart.status == "open",
                Cart.last_activity_at <= at,
            )
            .values(status="ordered")
        )
        if props.cart_id:
            session.execute(update(Cart).where(Cart.id == props.cart_id).values(status="ordered"))

    # -- routing -------------------------------------------------------------------------

    def _routes(self, session: Session, event: SegmentEvent, at: datetime) -> list[Route]:
        """What the stored event asks of Temporal, read from the store as it now is."""
        if event.type != "track" or not event.user_id or event.event is None:
            return []
        customer_id, name = event.user_id, event.event
        journey = self.journeys.abandoned_cart
        if name == "Order Completed":
            return [
                ExitJourney(
                    abandoned_cart_id(customer_id), "purchase", at, ref=event.order().order_id
                )
            ]
        if name not in CART_EVENTS or not journey.enabled:
            return []
        if self.clock() - at > journey.horizon():
            return []  # history being imported: its journey would already be over
        cart_id = (event.order() if name == "Checkout Started" else event.product()).cart_id
        cart = self._cart_for_route(session, customer_id, cart_id)
        if cart is None:
            return []
        if cart.status == "emptied":
            return [ExitJourney(abandoned_cart_id(customer_id), "cart_emptied", at, ref=cart.id)]
        if cart.status != "open" or not cart.lines:
            return []
        return [EnterCartJourney(customer_id, cart.id, at, event.message_id or "")]

    def _cart_for_route(
        self, session: Session, customer_id: str, cart_id: str | None
    ) -> Cart | None:
        if cart_id:
            return session.get(Cart, cart_id, options=[selectinload(Cart.lines)])
        return session.scalar(
            select(Cart)
            .where(Cart.customer_id == customer_id)
            .order_by(Cart.last_activity_at.desc())
            .options(selectinload(Cart.lines))
            .limit(1)
        )

    async def _route(self, route: Route) -> None:
        if isinstance(route, EnterCartJourney):
            await self.client.start_workflow(
                AbandonedCartWorkflow.run,
                AbandonedCartInput(
                    customer_id=route.customer_id,
                    cart_id=route.cart_id,
                    entered_at=route.at,
                    entry_event_id=route.event_id,
                    spec=self.journeys.spec("abandoned_cart"),
                ),
                id=route.workflow_id,
                task_queue=self.task_queue,
                # A running journey takes the signal; otherwise a new one starts with it.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal="cart_activity",
                start_signal_args=[CartActivity(cart_id=route.cart_id, at=route.at)],
                static_summary=f"abandoned cart of customer {route.customer_id}",
            )
            return
        handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(route.workflow_id)
        try:
            await handle.signal(
                AbandonedCartWorkflow.exit,
                JourneyExit(reason=route.reason, at=route.at, ref=route.ref),
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise  # NOT_FOUND: no journey running, nothing to end


def _dialect_insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _ensure_customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
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
    product = session.get(Product, props.product_id)
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
