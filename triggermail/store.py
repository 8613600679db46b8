"""The store: typed SQLAlchemy models and the engine/session factory.

SQLite by default, PostgreSQL in production; the schema is owned by the Alembic
migrations in ``triggermail/migrations``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


Money = Numeric(12, 2)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        Decimal: Money,
    }


class Customer(Base):
    __tablename__ = "customers"
    # The daily sweep pages through a day's birthdays and anniversaries by customer id.
    __table_args__ = (
        Index("ix_customers_birthday_md_id", "birthday_md", "id"),
        Index("ix_customers_first_order_md_id", "first_order_md", "id"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    birthday: Mapped[date | None] = mapped_column(Date)
    """The ``birthday`` trait; year 1904 when the shop sent only the day (``--02-29``)."""
    birthday_md: Mapped[str | None] = mapped_column(String(5))
    """``MM-DD`` of the birthday: the daily sweep finds the day's birthdays by it."""
    # Kept by the intake on every order event, so the daily sweep reads an index, not orders.
    orders_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Completed (not refunded or cancelled) orders."""
    total_spent: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0", index=True)
    first_order_at: Mapped[datetime | None]
    first_order_md: Mapped[str | None] = mapped_column(String(5))
    """``MM-DD`` of the first order: the anniversary the sweep looks for."""
    last_order_at: Mapped[datetime | None] = mapped_column(index=True)
    mailable_since: Mapped[datetime | None]
    """When an event first gave the customer an address and marketing consent; never
    moved after (a withdrawn and renewed consent is not a new customer)."""


class Product(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    brand: Mapped[str | None] = mapped_column(String(255), index=True)
    category: Mapped[str | None] = mapped_column(String(255), index=True)
    stock: Mapped[int | None] = mapped_column(Integer)
    """Units the shop has; None when its events never say. Zero: never recommended."""
    repurchase_days: Mapped[int | None] = mapped_column(Integer)
    """How long one lasts (a T-shirt: 180): the replenishment journey's cycle."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Cart(Base):
    """A cart, owned by a customer, or by an anonymous visitor until an identify links them."""

    __tablename__ = "carts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    anonymous_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    """``open``, ``ordered`` or ``emptied``."""
    currency: Mapped[str | None] = mapped_column(String(3))
    last_activity_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[CartLine]] = relationship(
        back_populates="cart", cascade="all, delete-orphan", order_by="CartLine.position"
    )


class CartLine(Base):
    __tablename__ = "cart_lines"
    __table_args__ = (UniqueConstraint("cart_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cart_id: Mapped[str] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    price: Mapped[Decimal | None]
    position: Mapped[int] = mapped_column(Integer, default=0)
    """Order the customer added lines in, so e-mails list them as the cart shows them."""

    cart: Mapped[Cart] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_customer_placed", "customer_id", "placed_at"),
        # Recommendations count what sold lately: the latest orders, by time.
        Index("ix_orders_placed", "placed_at"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    """None for a guest order until an identify links its ``anonymous_id`` to a customer."""
    anonymous_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="completed")
    """``completed``, ``refunded`` or ``cancelled``."""
    total: Mapped[Decimal | None]
    revenue: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    coupon: Mapped[str | None] = mapped_column(String(64))
    cart_id: Mapped[str | None] = mapped_column(String(255))
    placed_at: Mapped[datetime]
    shipped_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", cascade="all, delete-orphan"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    # Bought-together counts join order lines on their order.
    __table_args__ = (Index("ix_order_lines_order", "order_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    price: Mapped[Decimal | None]

    order: Mapped[Order] = relationship(back_populates="lines")
    product: Mapped[Product] = relationship()


class Event(Base):
    """Every event as received; ``message_id`` makes intake idempotent."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_time", "user_id", "timestamp"),
        Index("ix_events_customer_time", "customer_id", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    anonymous_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    """Whose it is: ``user_id``, or the customer its ``anonymous_id`` was linked to (then or
    later). ``user_id`` stays as the shop sent it."""
    timestamp: Mapped[datetime]
    """When it happened at the shop; drives every timing decision."""
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    routed_at: Mapped[datetime | None]
    """Set once Temporal has accepted what the event starts or signals."""


class Review(Base):
    """A ``Product Reviewed`` event: the review request stops asking for that product."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_customer_product", "customer_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    product_id: Mapped[str] = mapped_column(String(255))
    rating: Mapped[int | None] = mapped_column(Integer)
    reviewed_at: Mapped[datetime]


class JourneyEntry(Base):
    """A journey the daily sweep started, with what it knew at entry (the segment)."""

    __tablename__ = "journey_entries"
    __table_args__ = (Index("ix_journey_entries_customer", "customer_id", "entered_at"),)

    workflow_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    journey: Mapped[str] = mapped_column(String(64))
    segment: Mapped[str | None] = mapped_column(String(32))
    """``vip``, ``repeat`` or ``one_time`` at entry; None for journeys without segments."""
    entered_at: Mapped[datetime]
    sweep_date: Mapped[date | None] = mapped_column(Date)


class SweepRun(Base):
    """One day's sweep: the next sweep covers the days after the last one finished."""

    __tablename__ = "sweep_runs"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    matched: Mapped[int] = mapped_column(Integer, default=0)
    started: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Per journey: matched, started, skipped (and why)."""


class BuyerTally(Base):
    """The number of buyers (customers with ``total_spent > 0``) as the sum of its changes.

    Triggers on ``customers`` (migration 0008) add a row of +1 or -1 whenever a customer
    becomes or stops being a buyer, whoever writes the row: concurrent writers only
    append, never wait for each other. The daily sweep's plan folds the rows into one and
    takes the VIP rank from the sum instead of counting every customer.
    """

    __tablename__ = "buyer_tally"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change: Mapped[int] = mapped_column(Integer)


class SurveyAnswer(Base):
    """A reactivation survey's answer: why the customer stopped buying."""

    __tablename__ = "survey_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    send_id: Mapped[str] = mapped_column(String(32), unique=True)
    """The e-mail it answers: one answer per e-mail (a second click changes it)."""
    answer: Mapped[str] = mapped_column(String(32))
    answered_at: Mapped[datetime]


class Experiment(Base):
    """An A/B experiment on a journey step, and its automatic winner once one is decided.

    Written by the experiments sweep when it first sees an experiment in the config; the
    intake reads decided winners to give new entries the winning variant.
    """

    __tablename__ = "experiments"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    """The step's ``experiment`` (``<journey>.<step>`` unless the config names it)."""
    journey: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    """Ledger rows from then on count; earlier ones belong to an earlier experiment."""
    winner: Mapped[str | None] = mapped_column(String(64))
    """The variant new entries get; None while the experiment runs."""
    probability: Mapped[float | None]
    """The winner's posterior probability of converting best, when it was decided."""
    decided_at: Mapped[datetime | None]
    figures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The latest evaluation per variant: recipients, conversions, probability of being best."""
    evaluated_at: Mapped[datetime | None]


class Identity(Base):
    """An anonymous id (a browser, a device) that an event tied to a customer."""

    __tablename__ = "identities"

    anonymous_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    linked_at: Mapped[datetime]
    """Event time of the latest link; a device that changes hands follows the later one."""
    message_id: Mapped[str] = mapped_column(String(255))
    """The event that made the link."""


class Coupon(Base):
    __tablename__ = "coupons"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    percent: Mapped[int] = mapped_column(Integer)
    send_key: Mapped[str] = mapped_column(String(512), unique=True)
    """The idempotency key of the e-mail that carries it: one coupon per e-mail, even on retry."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    redeemed_order_id: Mapped[str | None] = mapped_column(String(255))


class EmailSend(Base):
    """The send ledger: one row per journey step per journey, recorded before the provider call."""

    __tablename__ = "email_sends"
    __table_args__ = (
        Index("ix_email_sends_customer", "customer_id", "created_at"),
        Index("ix_email_sends_due_at", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    """Opaque id, the only thing handed to the provider (``custom_args``) and to workflows."""
    idempotency_key: Mapped[str] = mapped_column(String(512), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    journey: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(64), default="control")
    workflow_id: Mapped[str] = mapped_column(String(512))
    template: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    """``pending`` → ``attempting`` → ``sent`` | ``failed`` | ``unknown``; or ``skipped``."""
    reason: Mapped[str | None] = mapped_column(Text)
    to_email: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    """When the journey first asked to send it: the deferral limit counts from here."""
    not_before: Mapped[datetime | None]
    """While ``pending``: held back by the frequency cap or quiet hours until then."""
    attempted_at: Mapped[datetime | None]
    """When it was handed to the provider: the frequency cap counts from here."""
    products: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The product ids it showed: ``{"featured": [...], "recommended": [...]}``."""


class Suppression(Base):
    """Whom marketing e-mail must never reach again: checked before every send.

    Unsubscribes suppress the customer; bounces, drops and complaints suppress the
    address (a customer who changes a dead address can be mailed at the new one).
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    """``unsubscribed``, ``bounced``, ``dropped``, ``spamreport`` or ``sunset``."""
    source: Mapped[str] = mapped_column(String(32))
    """``link`` (our unsubscribe page or one-click POST) or ``sendgrid`` (its webhook)."""
    send_id: Mapped[str | None] = mapped_column(String(32))
    """The e-mail that led to it, when known."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    journeys_ended_at: Mapped[datetime | None]
    """When Temporal took the exit signals of the customer's journeys (unsubscribes and
    complaints); None while that is still to do (:func:`triggermail.web.unsubscribe.follow_up`)."""


class EmailEvent(Base):
    """What SendGrid's Event Webhook reported about a sent e-mail, once per ``sg_event_id``."""

    __tablename__ = "email_events"
    __table_args__ = (Index("ix_email_events_send", "send_id", "event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    send_id: Mapped[str | None] = mapped_column(String(32))
    """Our ledger id from ``custom_args``; None for mail we did not send."""
    event: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


def order_stats(session: Session, customer_id: str | None) -> None:
    """Bring the customer's order statistics up to date with their orders in ``session``.

    The daily sweep finds lapsed customers, anniversaries and the top spenders through
    these indexed columns instead of aggregating every order.
    """
    if customer_id is None:
        return
    customer = session.get(Customer, customer_id)
    if customer is None:
        return
    count, spent, first, last = session.execute(
        select(
            func.count(Order.id),
            func.coalesce(func.sum(func.coalesce(Order.revenue, Order.total, 0)), 0),
            func.min(Order.placed_at),
            func.max(Order.placed_at),
        ).where(Order.customer_id == customer_id, Order.status == "completed")
    ).one()
    customer.orders_count, customer.total_spent = count, Decimal(spent)
    # SQLite hands aggregates of the column back as text, without the column's type.
    customer.first_order_at, customer.last_order_at = _aware(first), _aware(last)
    customer.first_order_md = (
        customer.first_order_at.strftime("%m-%d") if customer.first_order_at else None
    )


def insert_for(session: Session) -> Callable[[Any], postgresql.Insert | sqlite.Insert]:
    """The ``insert`` of the session's database, with its ``ON CONFLICT`` clauses
    (``on_conflict_do_nothing``): both dialects spell them alike."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; the busy timeout makes the two
    # processes queue for the write lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created on first use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)
