"""Sample data: the context every template is rendered against before a customer sees it.

:func:`sample_context` has the shape of a real send's context, with fixed products,
orders, people and dates, so the start-up check, the previews, the snapshots in
tests/emails and the benchmark render the same e-mails every time. It is apart from the
renderer because it is data about a made-up shop, not how e-mails are rendered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from activities.lapsed import LAPSED_JOURNEYS, lapsed_content
from triggermail.journeys import JourneysConfig
from workflows import registry
from workflows.types import SendEmailInput

SAMPLE_PRODUCTS = [
    ("Organic cotton T-shirt", "24.90", 2, "tee-organic"),
    ("Canvas tote", "15.00", 1, "tote-canvas"),
    ("Merino wool beanie", "32.00", 1, "beanie-merino"),
    ("Linen shirt", "59.00", 1, "shirt-linen"),
    ("Recycled wool socks, 2 pairs", "1234.50", 1, "socks-wool"),
]
"""Deliberately varied: a quantity above one, a product without an image (the tote), a
price with a thousands separator."""

CART_JOURNEYS = registry.about("cart")
"""Journeys whose e-mails show the customer's cart."""

VIEW_JOURNEYS = registry.about("views")
"""Journeys whose ``products`` are the ones the customer viewed, most recent first."""

ORDER_JOURNEYS = registry.about("order")
"""Journeys about one order: they read ``order``, and ``products`` come from it."""

SAMPLE_CATALOG: dict[str, tuple[str, str | None, str | None, str | None, bool]] = {
    # id: name, price, brand, category, has an image
    "tee-organic": ("Organic cotton T-shirt", "24.90", "Field & Loom", "T-shirts", True),
    "beanie-merino": ("Merino wool beanie", "32.00", "Nordwool", "Hats", True),
    "tote-canvas": ("Canvas tote", "15.00", "Field & Loom", "Bags", False),
    "shirt-linen": ("Linen shirt", "59.00", "Field & Loom", "Shirts", True),
    "gift-card": ("Gift card", None, None, "Gift cards", True),
    "parka-waxed": ("Waxed cotton parka", "1249.00", "Nordwool", "Coats", True),
    "mug-enamel": ("Enamel mug", "12.00", None, "Home", True),
}
"""Products of the new journeys' samples. Deliberately varied like ``SAMPLE_PRODUCTS``: one
without an image (the tote), one without a price (the gift card), one with a thousands
separator (the parka)."""

SAMPLE_VIEWED = ["beanie-merino", "tee-organic"]
"""What a browse abandoner looked at, most recent first."""

SAMPLE_RECOMMENDED = ["shirt-linen", "tote-canvas", "gift-card", "parka-waxed", "mug-enamel"]
"""Recommendations in the recommender's order; the products an e-mail is about are left
out, as the real recommender leaves out bought and trigger items."""

SAMPLE_ORDERS: dict[str, tuple[str, datetime, datetime | None, list[tuple[str, int]]]] = {
    # journey: order id, placed, delivered, lines (product id, quantity)
    "post_purchase": (
        "10482",
        datetime(2029, 12, 29, 11, 48, tzinfo=UTC),
        None,
        [("tee-organic", 2), ("beanie-merino", 1)],
    ),
    "review_request": (
        "10482",
        datetime(2029, 12, 24, 11, 48, tzinfo=UTC),
        datetime(2029, 12, 29, 10, 5, tzinfo=UTC),
        [("tee-organic", 2), ("beanie-merino", 1)],
    ),
    # Ordered 5.5 months before ``now``: a T-shirt's 6-month cycle minus 15 days' lead.
    "replenishment": (
        "9731",
        datetime(2029, 7, 20, 9, 30, tzinfo=UTC),
        datetime(2029, 7, 23, 14, 10, tzinfo=UTC),
        [("tee-organic", 2), ("tote-canvas", 1)],
    ),
}

SAMPLE_OCCASIONS: dict[str, dict[str, Any]] = {
    # step of the birthday journey: the occasion it greets
    "birthday": {"name": "birthday", "years": None, "day": date(2030, 1, 1)},
    "anniversary": {"name": "anniversary", "years": 3, "day": date(2030, 1, 1)},
}
"""The birthday journey's ``occasion``, on the day of the samples' ``now``."""

SAMPLE_PEOPLE = {
    "en": ("Alex", "Europe/London"),
    "fr": ("Camille", "Europe/Paris"),
    "ja": ("陽菜", "Asia/Tokyo"),
    "uk": ("Олена", "Europe/Kyiv"),
}


def sample_context(
    journeys: JourneysConfig,
    *,
    journey: str = "abandoned_cart",
    step: str = "reminder",
    coupon_percent: int | None = None,
    locale: str | None = None,
    products: int = 3,
) -> dict[str, Any]:
    """The data every template is checked against: the same shape as a real send's.

    Fixed dates and coupon, so previews and snapshots only change when templates do.
    Like a real send, every context has every key: ``cart`` only for a cart's journey,
    ``order`` only for an order's, ``products`` (viewed, ordered, to review, to reorder)
    and ``recommendations`` (as many as the step's ``recommendations``) empty elsewhere,
    ``review_bonus`` only for review requests.
    """
    shop = journeys.shop
    first_name, timezone = SAMPLE_PEOPLE.get(locale or "", SAMPLE_PEOPLE["en"])
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    for position, (name, price, quantity, slug) in enumerate(SAMPLE_PRODUCTS[:products]):
        total += Decimal(price) * quantity
        lines.append(
            {
                "name": name,
                "quantity": quantity,
                "price": Decimal(price),
                "line_total": Decimal(price) * quantity,
                "url": f"{shop.url}/products/{slug}",
                "image_url": None if position == 1 else f"{shop.url}/images/{slug}.jpg",
            }
        )
    order = _sample_order(shop.url, shop.currency, journey)
    if journey in VIEW_JOURNEYS:
        about = list(SAMPLE_VIEWED)
    elif order is None:
        about = []
    elif journey == "replenishment":
        about = [order["lines"][0]["product_id"]]  # the product that runs out
    else:
        about = [line["product_id"] for line in order["lines"]]
    in_cart = [slug for *_, slug in SAMPLE_PRODUCTS[:products]] if journey in CART_JOURNEYS else []
    shown = {*about, *in_cart}
    recommended = [slug for slug in SAMPLE_RECOMMENDED if slug not in shown]
    review_request = journeys.review_request
    return {
        "shop": shop.model_dump(),
        "campaign": {"journey": journey, "step": step},
        "links": {"unsubscribe": shop.preferences_url},
        "customer": {"id": "sample", "first_name": first_name, "timezone": timezone},
        # As in a real send: only a cart's journey has one, so a template of another
        # journey that reads it fails the start-up check.
        "cart": (
            {
                "id": "sample-cart",
                "lines": lines,
                "total": total,
                "currency": shop.currency,
                "url": f"{shop.url}/cart",
            }
            if journey in CART_JOURNEYS
            else None
        ),
        "coupon": (
            {
                "code": "SAMPLE-7KQ2XW",
                "percent": coupon_percent,
                "expires_at": datetime(2030, 1, 2, 18, 0, tzinfo=UTC),
            }
            if coupon_percent
            else None
        ),
        "products": [_sample_product(shop.url, shop.currency, slug) for slug in about],
        # As many as the step asks for, as the real send does: none for most steps.
        "recommendations": [
            _sample_product(shop.url, shop.currency, slug)
            for slug in recommended[: _recommendations(journeys, journey, step)]
        ],
        "order": order,
        "review_bonus": (
            review_request.bonus
            if journey == "review_request" and review_request is not None
            else None
        ),
        # Only the birthday journey's e-mails greet an occasion.
        "occasion": SAMPLE_OCCASIONS.get(step) if journey == "birthday" else None,
        "lapsed": _sample_lapsed(journeys, journey, step),
        "now": datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
    }


def _sample_lapsed(journeys: JourneysConfig, journey: str, step: str) -> dict[str, Any] | None:
    """A repeat buyer's ``lapsed`` key, as the send builds it; None for other journeys."""
    if journey not in LAPSED_JOURNEYS or getattr(journeys, journey, None) is None:
        return None
    spec = next((s for s in journeys.spec(journey).steps if s.name == step), None)
    if spec is None:
        return None
    request = SendEmailInput(
        idempotency_key="sample",
        customer_id="sample",
        journey=journey,
        step=spec,
        workflow_id="sample",
        entered_at=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        segment="repeat",
    )
    lapsed = lapsed_content(journeys, request)
    assert lapsed is not None
    survey = [
        {**entry, "url": f"http://localhost:8000/survey/sample/{entry['answer']}"}
        for entry in lapsed["survey"]
    ]
    return {**lapsed, "survey": survey}


def _recommendations(journeys: JourneysConfig, journey: str, step: str) -> int:
    """How many recommendations the step shows (its ``recommendations`` in the TOML)."""
    config = getattr(journeys, journey, None)
    for candidate in getattr(config, "steps", None) or []:
        if candidate.name == step:
            return int(candidate.recommendations)
    return 0


def _sample_product(shop_url: str, currency: str, product_id: str) -> dict[str, Any]:
    name, price, brand, category, has_image = SAMPLE_CATALOG[product_id]
    return {
        "id": product_id,
        "name": name,
        "price": Decimal(price) if price is not None else None,
        "currency": currency,
        "url": f"{shop_url}/products/{product_id}",
        "image_url": f"{shop_url}/images/{product_id}.jpg" if has_image else None,
        "brand": brand,
        "category": category,
        "review_url": f"{shop_url}/products/{product_id}/reviews/new",
    }


def _sample_order(shop_url: str, currency: str, journey: str) -> dict[str, Any] | None:
    if journey not in ORDER_JOURNEYS:
        return None
    order_id, placed_at, delivered_at, quantities = SAMPLE_ORDERS[journey]
    lines = []
    for product_id, quantity in quantities:
        product = _sample_product(shop_url, currency, product_id)
        lines.append(
            {
                "product_id": product_id,
                "name": product["name"],
                "quantity": quantity,
                "price": product["price"],
                "line_total": product["price"] * quantity,
                "url": product["url"],
                "image_url": product["image_url"],
            }
        )
    return {
        "id": order_id,
        "placed_at": placed_at,
        "delivered_at": delivered_at,
        "lines": lines,
        "total": sum((line["line_total"] for line in lines), Decimal(0)),
        "currency": currency,
        "url": f"{shop_url}/account/orders/{order_id}",
    }
