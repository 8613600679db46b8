"""Products to recommend beside the ones an e-mail is about, read from the store.

Bought together with them in past orders first, then the same category, then the same
brand, then what the shop sells most lately; never what the customer already bought,
never out of stock, never the products the e-mail is about. Deterministic for a given
store state: ties go to the product bought more often lately, then to the lower id.

The store ranks every candidate in one statement and returns only the ``limit`` best:
cutting each source to its first rows before ranking let a large catalogue push the
best ones out. What is counted is bounded all the same: the lines of at most
``RECENT_ORDERS`` orders for what sells, as many for what was bought together, and the
products of the seeds' categories and brands.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import ColumnElement, Select, case, func, or_, select, union
from sqlalchemy.orm import Session

from triggermail.store import Order, OrderLine, Product

TOGETHER, CATEGORY, BRAND = 100.0, 10.0, 5.0
"""Weights: one order that bought both outweighs any amount of catalogue likeness."""
RECENT_ORDERS = 2000
"""What "sells most lately" counts, and how far back "bought together" looks: the
latest orders (those with one of the e-mail's products, for the latter)."""


def recommend(
    session: Session,
    *,
    customer_id: str,
    seeds: Sequence[str],
    limit: int,
    exclude: Collection[str] = (),
) -> list[Product]:
    """Up to ``limit`` products to show with ``seeds`` (the e-mail's own products)."""
    if limit <= 0:
        return []
    of_seeds = select(Product.brand, Product.category).where(Product.id.in_(seeds))
    seed_rows = session.execute(of_seeds).all() if seeds else []
    brands = {brand for brand, _ in seed_rows if brand}
    categories = {category for _, category in seed_rows if category}
    sales = _orders_per_product(_latest_orders()).cte("sales")
    together = _orders_per_product(_latest_orders(containing=seeds)).cte("together")
    # The bestsellers are candidates too, so an e-mail with recommendations is never
    # empty-handed while the shop sells anything.
    candidates = union(
        select(together.c.product_id),
        select(Product.id).where(or_(Product.category.in_(categories), Product.brand.in_(brands))),
        select(sales.c.product_id),
    ).subquery()
    score = (
        TOGETHER * func.coalesce(together.c.orders, 0)
        + case((Product.category.in_(categories), CATEGORY), else_=0.0)
        + case((Product.brand.in_(brands), BRAND), else_=0.0)
    )
    bought = (
        select(OrderLine.product_id)
        .join(Order, Order.id == OrderLine.order_id)
        .where(Order.customer_id == customer_id, Order.status == "completed")
    )
    statement = (
        select(Product)
        .join(candidates, candidates.c.product_id == Product.id)
        .outerjoin(together, together.c.product_id == Product.id)
        .outerjoin(sales, sales.c.product_id == Product.id)
        .where(
            _in_stock(),
            Product.id.not_in([*seeds, *exclude]),
            Product.id.not_in(bought),
        )
        .order_by(score.desc(), func.coalesce(sales.c.orders, 0).desc(), Product.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def _in_stock() -> ColumnElement[bool]:
    # Unknown stock (None) is sellable: most shops never send it.
    return or_(Product.stock.is_(None), Product.stock > 0)


def _latest_orders(*, containing: Sequence[str] | None = None) -> Select[str]:
    """The shop's latest completed orders, or the latest with one of ``containing``."""
    orders = select(Order.id).where(Order.status == "completed")
    if containing is not None:
        # No index orders a product's lines by time, so finding these still reads every
        # line of ``containing``; only what is counted afterwards is bounded.
        with_product = select(OrderLine.order_id).where(OrderLine.product_id.in_(containing))
        orders = orders.where(Order.id.in_(with_product))
    # The id settles orders placed in the same instant, so the window is the same each time.
    return orders.order_by(Order.placed_at.desc(), Order.id.desc()).limit(RECENT_ORDERS)


def _orders_per_product(orders: Select[str]) -> Select[str, int]:
    """How many of ``orders`` each product was bought in."""
    # A product on two lines of one order counts once. DISTINCT before counting rather
    # than count(DISTINCT): PostgreSQL hashes the one and has to sort for the other.
    lines = (
        select(OrderLine.order_id, OrderLine.product_id)
        .where(OrderLine.order_id.in_(orders))
        .distinct()
        .subquery()
    )
    return select(lines.c.product_id, func.count().label("orders")).group_by(lines.c.product_id)
