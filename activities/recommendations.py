"""Products to recommend beside the ones an e-mail is about, read from the store.

Bought together with them in past orders first, then the same category, then the same
brand, then what the shop sells most lately; never what the customer already bought,
never out of stock, never the products the e-mail is about. Deterministic for a given
store state: ties go to the product bought more often lately, then to the lower id.
Every query is bounded, so one e-mail costs the same in a small shop and a large one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, aliased

from triggermail.store import Order, OrderLine, Product

TOGETHER, CATEGORY, BRAND = 100.0, 10.0, 5.0
"""Weights: one order that bought both outweighs any amount of catalogue likeness."""
CANDIDATES = 500
"""Rows read per source at most."""
RECENT_ORDERS = 2000
"""What "sells most lately" counts: the shop's latest orders."""


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
    bought = set(
        session.scalars(
            select(OrderLine.product_id)
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.customer_id == customer_id, Order.status == "completed")
        )
    )
    skip = bought | set(seeds) | set(exclude)
    recent = _recent_sales(session)
    scores: defaultdict[str, float] = defaultdict(float)
    if seeds:
        other = aliased(OrderLine)
        orders = func.count(func.distinct(other.order_id))
        together = (
            select(other.product_id, orders)
            .select_from(OrderLine)
            .join(other, other.order_id == OrderLine.order_id)
            .join(Order, Order.id == OrderLine.order_id)
            .where(
                OrderLine.product_id.in_(seeds),
                other.product_id.not_in(seeds),
                Order.status == "completed",
            )
            .group_by(other.product_id)
            .order_by(orders.desc(), other.product_id)
            .limit(CANDIDATES)
        )
        for product_id, count in session.execute(together):
            scores[product_id] += TOGETHER * count
        seed_rows = session.execute(
            select(Product.brand, Product.category).where(Product.id.in_(seeds))
        ).all()
        brands = {brand for brand, _ in seed_rows if brand}
        categories = {category for _, category in seed_rows if category}
        if brands or categories:
            alike = (
                select(Product.id, Product.brand, Product.category)
                .where(or_(Product.brand.in_(brands), Product.category.in_(categories)))
                .where(_in_stock())
                .order_by(Product.id)
                .limit(CANDIDATES)
            )
            for product_id, brand, category in session.execute(alike):
                scores[product_id] += (CATEGORY if category in categories else 0.0) + (
                    BRAND if brand in brands else 0.0
                )
    rows = _sellable(session, [pid for pid in scores if pid not in skip])
    ranked = sorted(rows, key=lambda pid: (-scores[pid], -recent[pid], pid))[:limit]
    # Then the bestsellers: an e-mail with recommendations is never empty-handed.
    bestsellers = [pid for pid, _ in recent.most_common() if pid not in skip and pid not in rows]
    for start in range(0, len(bestsellers), 100):
        if len(ranked) >= limit:
            break
        found = _sellable(session, bestsellers[start : start + 100])
        rows.update(found)
        ranked += [pid for pid in bestsellers[start : start + 100] if pid in found]
    return [rows[product_id] for product_id in ranked[:limit]]


def _sellable(session: Session, product_ids: list[str]) -> dict[str, Product]:
    rows: dict[str, Product] = {}
    for start in range(0, len(product_ids), CANDIDATES):
        chunk = product_ids[start : start + CANDIDATES]
        statement = select(Product).where(Product.id.in_(chunk), _in_stock())
        rows.update((product.id, product) for product in session.scalars(statement))
    return rows


def _in_stock() -> ColumnElement[bool]:
    # Unknown stock (None) is sellable: most shops never send it.
    return or_(Product.stock.is_(None), Product.stock > 0)


def _recent_sales(session: Session) -> Counter[str]:
    """Orders per product among the shop's latest orders."""
    latest = (
        select(Order.id)
        .where(Order.status == "completed")
        .order_by(Order.placed_at.desc())
        .limit(RECENT_ORDERS)
        .subquery()
    )
    rows = session.execute(
        select(OrderLine.product_id, func.count(func.distinct(OrderLine.order_id)))
        .join(latest, latest.c.id == OrderLine.order_id)
        .group_by(OrderLine.product_id)
    )
    return Counter({product_id: count for product_id, count in rows})
