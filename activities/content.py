"""What each journey's e-mail is about, and why it must not go, read fresh from the store.

One function per journey kind, called by the send activity after the guards every
e-mail shares (consent, suppression, purchase): the products and order the e-mail shows,
its recommendations, and the journey's own reasons to stop (a cart was filled, the order
was refunded, everything was reviewed, the product was bought again). ``triggermail
preview`` builds a customer's e-mail through the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from activities.lapsed import LAPSED_JOURNEYS, lapsed_content
from activities.recommendations import recommend
from triggermail.birthdays import birthday_on
from triggermail.journeys import JourneysConfig
from triggermail.localtime import customer_zone
from triggermail.store import Cart, CartLine, Customer, Order, OrderLine, Product, Review
from workflows import registry
from workflows.types import SendEmailInput

PRODUCT_JOURNEYS = frozenset(j.name for j in registry.JOURNEYS if j.needs_products)
"""Journeys whose e-mail is about products it names: without one in stock, no e-mail."""


@dataclass
class Content:
    """An e-mail's products and order as templates read them, or the reason it must not go."""

    stop: str | None = None
    products: list[Product] = field(default_factory=list)
    recommendations: list[Product] = field(default_factory=list)
    order: Order | None = None
    occasion: dict[str, Any] | None = None
    """Birthday journey: ``name`` (``birthday``/``anniversary``), ``years``, ``day``."""
    lapsed: dict[str, Any] | None = None
    """Reactivation and win-back: :func:`activities.lapsed.lapsed_content`."""

    def record(self) -> dict[str, list[str]]:
        """What the ledger keeps: the ids shown, for attribution."""
        return {
            "featured": [p.id for p in self.products],
            "recommended": [p.id for p in self.recommendations],
        }


def journey_content(
    session: Session,
    journeys: JourneysConfig,
    request: SendEmailInput,
    customer: Customer,
    cart: Cart | None,
) -> Content:
    """The e-mail's content for ``request``; ``Content.stop`` says why it must not go."""
    journey = request.journey
    order = _order(session, request.order_id)
    if request.order_id is not None:
        if order is None or order.customer_id != customer.id:
            return Content(stop="order_cancelled")  # the shop never told us, or took it back
        if order.status in ("refunded", "cancelled"):
            return Content(stop=f"order_{order.status}")
    content = Content(order=order)
    if journey == "browse_abandonment":
        carted = session.scalar(
            select(Cart.id)
            .where(
                Cart.customer_id == customer.id,
                Cart.lines.any(),
                Cart.last_activity_at >= request.entered_at,
            )
            .limit(1)
        )
        if carted is not None:
            return Content(stop="carted")  # the cart journey has them now
        content.products = _products(session, request.product_ids)
    elif journey == "post_purchase" and order is not None:
        content.products = _products(
            session, [line.product_id for line in order.lines], sellable=False
        )
    elif journey == "review_request" and order is not None:
        reviewed = set(
            session.scalars(
                select(Review.product_id).where(
                    Review.customer_id == customer.id,
                    Review.product_id.in_([line.product_id for line in order.lines]),
                )
            )
        )
        # Sold out or not, what they bought can be reviewed; listed as the order listed them
        # (the database hands lines back by product id).
        lines = sorted(order.lines, key=lambda line: line.id)
        content.products = _products(
            session,
            [line.product_id for line in lines if line.product_id not in reviewed],
            sellable=False,
        )
        if not content.products:
            return Content(stop="reviewed")
    elif journey == "birthday":
        content.occasion = _occasion(journeys, request, customer)
        if content.occasion is None:
            return Content(stop="not_their_day")
    elif journey in LAPSED_JOURNEYS:
        content.lapsed = lapsed_content(journeys, request)
    elif journey == "replenishment":
        if _bought_again(session, journeys, request, customer):
            return Content(stop="repurchased")
        content.products = _products(session, request.product_ids)
    if journey in PRODUCT_JOURNEYS and not content.products:
        # Every product it was about is gone from sale: nothing to show.
        return Content(stop="nothing_to_show")
    wanted = request.step.recommendations
    if wanted:
        seeds = [p.id for p in content.products]
        if cart is not None:
            seeds += [line.product_id for line in cart.lines]
        content.recommendations = recommend(
            session, customer_id=customer.id, seeds=seeds, limit=wanted
        )
        if journey == "post_purchase" and not content.recommendations:
            content.stop = "nothing_to_show"  # a cross-sell with nothing to sell
    return content


def content_context(content: Content, shop_url: str, currency: str) -> dict[str, Any]:
    """The template keys ``products``, ``recommendations``, ``order``, ``occasion`` and
    ``lapsed``."""
    return {
        "occasion": content.occasion,
        "lapsed": content.lapsed,
        "products": [_product(p, shop_url, currency) for p in content.products],
        "recommendations": [_product(p, shop_url, currency) for p in content.recommendations],
        "order": _order_context(content.order, shop_url, currency) if content.order else None,
    }


def _order(session: Session, order_id: str | None) -> Order | None:
    if order_id is None:
        return None
    return session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.lines).selectinload(OrderLine.product))
    )


def _products(session: Session, product_ids: list[str], *, sellable: bool = True) -> list[Product]:
    """The products, in the order given; only those in stock when ``sellable``."""
    if not product_ids:
        return []
    rows = {p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))}
    ordered = [rows[pid] for pid in dict.fromkeys(product_ids) if pid in rows]
    return [p for p in ordered if not sellable or p.stock is None or p.stock > 0]


def _occasion(
    journeys: JourneysConfig, request: SendEmailInput, customer: Customer
) -> dict[str, Any] | None:
    """The birthday or first-order anniversary the e-mail greets; None when the store no
    longer has it on this day (a corrected birthday, an order history taken back)."""
    if request.send_on:
        day = date.fromisoformat(request.send_on)
    else:  # a preview: as if today were the day
        day = request.entered_at.astimezone(
            customer_zone(customer.timezone, journeys.shop.timezone)
        ).date()
    name = request.step.name
    if name == "birthday":
        if request.send_on and (
            customer.birthday is None or birthday_on(customer.birthday, day.year) != day
        ):
            return None
        return {"name": name, "years": None, "day": day}
    first = customer.first_order_at
    # As the sweep finds anniversaries: by the first order's day in UTC.
    if first is None or (request.send_on and birthday_on(first.date(), day.year) != day):
        return None
    years = day.year - first.year
    if years < 1:
        return None
    return {"name": name, "years": years, "day": day}


def _bought_again(
    session: Session, journeys: JourneysConfig, request: SendEmailInput, customer: Customer
) -> bool:
    """An order after the one the cycle counts from, with the product (or its category)."""
    config = journeys.replenishment
    match = config.match if config else "product"
    product = session.get(Product, request.product_ids[0]) if request.product_ids else None
    if product is None:
        return False
    same = (
        OrderLine.product_id.in_(select(Product.id).where(Product.category == product.category))
        if match == "category" and product.category
        else OrderLine.product_id == product.id
    )
    later = session.scalar(
        select(Order.id)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            Order.customer_id == customer.id,
            Order.status == "completed",
            Order.placed_at > request.entered_at,
            Order.id != request.order_id,
            same,
        )
        .limit(1)
    )
    return later is not None


def _product(product: Product, shop_url: str, currency: str) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "price": product.price,
        "currency": product.currency or currency,
        "url": product.url or f"{shop_url}/products/{product.id}",
        "image_url": product.image_url,
        "brand": product.brand,
        "category": product.category,
        "review_url": f"{shop_url}/products/{product.id}/reviews/new",
    }


def lines_context(
    lines: Iterable[CartLine | OrderLine], shop_url: str
) -> tuple[list[dict[str, Any]], Decimal]:
    """A cart's or an order's lines as templates read them, and their total."""
    out = []
    total = Decimal(0)
    for line in lines:
        product = line.product
        price = line.price if line.price is not None else product.price
        line_total = price * line.quantity if price is not None else None
        total += line_total or 0
        out.append(
            {
                "product_id": product.id,
                "name": product.name,
                "quantity": line.quantity,
                "price": price,
                "line_total": line_total,
                "url": product.url or f"{shop_url}/products/{product.id}",
                "image_url": product.image_url,
            }
        )
    return out, total


def _order_context(order: Order, shop_url: str, currency: str) -> dict[str, Any]:
    # As the shop listed them: unsorted, the database may hand lines back by product id.
    lines, total = lines_context(sorted(order.lines, key=lambda line: line.id), shop_url)
    return {
        "id": order.id,
        "placed_at": order.placed_at,
        "delivered_at": order.delivered_at,
        "lines": lines,
        "total": order.total if order.total is not None else total,
        "currency": order.currency or currency,
        "url": f"{shop_url}/account/orders/{order.id}",
    }
