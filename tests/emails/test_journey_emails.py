"""The e-mails of the catalogue journeys: browse abandonment, post-purchase, review request
and replenishment. What each shows, and how it reads when a piece of data is missing."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from activities.rendering import Renderer, link_problems
from activities.samples import sample_context
from triggermail.journeys import load_journeys

JOURNEYS = load_journeys()
RENDERER = Renderer(shop_locale="en")
LOCALES = ["en", "fr", "ja", "uk"]
STEPS = {
    (journey, step.name): step
    for journey, config in JOURNEYS.enabled().items()
    for step in config.steps
}
PRODUCT_KEYS = {
    "id",
    "name",
    "price",
    "currency",
    "url",
    "image_url",
    "brand",
    "category",
    "review_url",
}
LINE_KEYS = {"product_id", "name", "quantity", "price", "line_total", "url", "image_url"}


def context(journey: str, step: str, *, locale: str = "en", **changes: Any) -> dict[str, Any]:
    ctx = sample_context(
        JOURNEYS,
        journey=journey,
        step=step,
        coupon_percent=STEPS[journey, step].coupon_percent,
        locale=locale,
    )
    ctx.update(changes)
    return ctx


def render(journey: str, step: str, ctx: dict[str, Any], locale: str = "en") -> tuple[str, str]:
    """The text part with its subject, and the HTML's visible words."""
    rendered = RENDERER.render(STEPS[journey, step].template, ctx, locale=locale)
    assert link_problems(rendered, ctx) == []
    visible = html.unescape(re.sub(r"<[^>]+>", " ", rendered.html))
    return f"{rendered.subject}\n{rendered.preheader}\n{rendered.text}", visible


# -- the context contract -------------------------------------------------------------------


@pytest.mark.parametrize(("journey", "step"), sorted(STEPS))
def test_every_sample_context_has_every_key_in_the_real_sends_shape(
    journey: str, step: str
) -> None:
    ctx = context(journey, step)
    assert {"products", "recommendations", "order", "review_bonus", "cart", "coupon"} <= set(ctx)
    for product in [*ctx["products"], *ctx["recommendations"]]:
        assert set(product) == PRODUCT_KEYS
        assert product["url"].startswith("https://") and product["review_url"].endswith(
            f"/products/{product['id']}/reviews/new"
        )
        assert product["price"] is None or isinstance(product["price"], Decimal)
    shown = {product["id"] for product in ctx["products"]}
    assert not shown & {product["id"] for product in ctx["recommendations"]}
    assert len(ctx["recommendations"]) == STEPS[journey, step].recommendations
    order = ctx["order"]
    if journey in ("post_purchase", "review_request", "replenishment"):
        assert order["placed_at"].tzinfo is not None
        assert order["url"] == f"https://shop.example/account/orders/{order['id']}"
        assert all(set(line) == LINE_KEYS for line in order["lines"])
        assert order["total"] == sum(line["line_total"] for line in order["lines"])
        assert ctx["products"]
    else:
        assert order is None
    if journey in ("abandoned_cart", "welcome"):
        assert ctx["products"] == []
    assert ctx["review_bonus"] == (
        "10 % off your next order" if journey == "review_request" else None
    )


def test_replenishment_is_about_one_product_ordered_five_and_a_half_months_ago() -> None:
    ctx = context("replenishment", "reminder")
    assert [product["id"] for product in ctx["products"]] == ["tee-organic"]
    assert (ctx["now"] - ctx["order"]["placed_at"]).days == 165


# -- what each e-mail shows -----------------------------------------------------------------


def test_browse_reminder_shows_the_viewed_products_and_links_to_the_latest() -> None:
    text, visible = render("browse_abandonment", "viewed", context("browse_abandonment", "viewed"))
    assert text.startswith("Alex, did something catch your eye?")
    assert text.index("Merino wool beanie") < text.index("Organic cotton T-shirt")
    assert "Take another look: https://shop.example/products/beanie-merino?utm_" in text
    assert "Merino wool beanie" in visible and "€32.00" in visible


def test_browse_without_products_sends_to_the_shop() -> None:
    ctx = context("browse_abandonment", "viewed", customer={"first_name": None, "timezone": None})
    text, _ = render("browse_abandonment", "viewed", {**ctx, "products": []})
    assert text.startswith("Did something catch your eye?")
    assert "Visit Your Shop: https://shop.example/?utm_" in text


def test_browse_offer_shows_the_code_the_products_then_recommendations() -> None:
    text, visible = render("browse_abandonment", "offer", context("browse_abandonment", "offer"))
    assert text.startswith("10% off what caught your eye — until Jan 2, 2030, 6:00\u202fPM")
    code, viewed = text.index("SAMPLE-7KQ2XW"), text.index("Merino wool beanie")
    assert code < viewed < text.index("You might also like") < text.index("Linen shirt")
    assert "- Gift card\n" in text  # no price: no empty amount
    assert "You might also like" in visible and "Linen shirt" in visible


@pytest.mark.parametrize(
    ("journey", "step"),
    [
        ("browse_abandonment", "offer"),
        ("replenishment", "reminder"),
        ("post_purchase", "cross_sell"),
        ("abandoned_cart", "reminder"),
    ],
)
@pytest.mark.parametrize("locale", LOCALES)
def test_no_recommendations_no_section(journey: str, step: str, locale: str) -> None:
    ctx = context(journey, step, locale=locale, recommendations=[])
    text, visible = render(journey, step, ctx, locale)
    assert "Linen shirt" not in text and "Linen shirt" not in visible
    assert "You might also like" not in text


def test_cart_reminder_shows_recommendations_when_the_step_has_them() -> None:
    ctx = context("abandoned_cart", "reminder")
    assert len(ctx["recommendations"]) == 2  # the packaged default
    text, visible = render("abandoned_cart", "reminder", ctx)
    assert text.index("Return to your cart") < text.index("You might also like")
    assert "Linen shirt: €59.00" in text and "Linen shirt" in visible
    assert 'class="h2"' in RENDERER.render("abandoned_cart/reminder", ctx, locale="en").html


def test_thank_you_summarises_the_order_and_links_to_it() -> None:
    text, visible = render("post_purchase", "thank_you", context("post_purchase", "thank_you"))
    assert text.startswith("Alex, thank you for your order")
    assert "Organic cotton T-shirt × 2: €49.80" in text and "Total: €81.80" in text
    assert "View your order: https://shop.example/account/orders/10482?utm_" in text
    assert "2 × €24.90" in visible and "€81.80" in visible


@pytest.mark.parametrize("locale", LOCALES)
def test_cross_sell_without_recommendations_still_reads_well(locale: str) -> None:
    ctx = context("post_purchase", "cross_sell", locale=locale, recommendations=[])
    text, _ = render("post_purchase", "cross_sell", ctx, locale)
    assert "10482" in text and "https://shop.example/?utm_" in text


def test_review_request_links_each_product_to_its_review_form_and_shows_the_bonus() -> None:
    text, visible = render("review_request", "ask", context("review_request", "ask"))
    for product in ("tee-organic", "beanie-merino"):
        assert f"https://shop.example/products/{product}/reviews/new?utm_" in text
    assert "As a thank-you for your review: 10 % off your next order." in text
    assert "10 % off your next order" in visible and visible.count("Write a review") == 2


@pytest.mark.parametrize("step", ["ask", "reminder"])
@pytest.mark.parametrize("locale", LOCALES)
def test_no_bonus_no_sentence(step: str, locale: str) -> None:
    with_bonus, _ = render("review_request", step, context("review_request", step, locale=locale))
    ctx = context("review_request", step, locale=locale, review_bonus=None)
    text, visible = render("review_request", step, ctx, locale)
    assert "10 % off your next order" in with_bonus
    assert "10 % off" not in text and "10 % off" not in visible
    assert len(text.splitlines()) == len(with_bonus.splitlines()) - 2


def test_review_reminder_says_it_is_the_last() -> None:
    text, _ = render("review_request", "reminder", context("review_request", "reminder"))
    assert "We will not ask again." in text and "This is our only reminder." in text


def test_replenishment_names_the_product_and_when_it_was_ordered() -> None:
    ctx = context("replenishment", "reminder", locale="fr")
    text, _ = render("replenishment", "reminder", ctx, "fr")
    assert text.startswith("Camille, bientôt à court de «\xa0Organic cotton T-shirt\xa0»\xa0?")
    assert "«\xa0Organic cotton T-shirt\xa0» le 20 juil. 2029." in text
    assert "Commander à nouveau\xa0: https://shop.example/products/tee-organic?utm_" in text


@pytest.mark.parametrize(("journey", "step"), sorted(STEPS))
@pytest.mark.parametrize("locale", LOCALES)
def test_every_step_has_a_nameless_variant(journey: str, step: str, locale: str) -> None:
    ctx = context(journey, step, locale=locale, customer={"first_name": None, "timezone": None})
    text, _ = render(journey, step, ctx, locale)
    assert "None" not in text and not text.startswith((",", "、"))


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("en", "Jul 20, 2029"), ("fr", "20 juil. 2029"), ("ja", "2029/07/20"), ("uk", "20 лип. 2029")],
)
def test_dates_are_the_locales_own_in_the_customers_timezone(locale: str, expected: str) -> None:
    template = RENDERER.env.from_string("{{ moment|date(zone) }}")
    moment = datetime(2029, 7, 20, 22, 30, tzinfo=UTC)
    assert template.render(moment=moment, zone="Europe/London", locale=locale).startswith(expected)
    # 22:30 UTC is already the next day in Tokyo.
    assert "21" in template.render(moment=moment, zone="Asia/Tokyo", locale=locale)
