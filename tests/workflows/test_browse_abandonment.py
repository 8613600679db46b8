"""Browse abandonment, as the customer experiences it, on the time-skipping server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from tests.harness import Shop
from triggermail.ids import browse_abandonment_id
from triggermail.journeys import load_journeys
from triggermail.store import Cart, CartLine, Order, Suppression
from triggermail.variants import in_holdout
from triggermail.web.unsubscribe import end_journeys
from worker import WORKFLOWS
from workflows.types import JourneyResult

HISTORIES = Path(__file__).parent.parent / "histories"
SECONDS = timedelta(seconds=2)

SCARF = {"product_id": "scarf-1", "name": "Wool scarf", "price": 30, "category": "scarves"}
SILK = {"product_id": "silk-2", "name": "Silk scarf", "price": 40, "category": "scarves"}
BEANIE = {"product_id": "beanie-3", "name": "Knit beanie", "price": 12, "category": "hats"}
CAP = {"product_id": "cap-4", "name": "Scarf clip", "price": 8, "category": "scarves"}
MUG = {"product_id": "mug-5", "name": "Tea mug", "price": 9, "category": "scarves"}
GLOVES = {"product_id": "gloves-6", "name": "Leather gloves", "price": 50, "stock": 0}


@pytest.fixture
async def shop(env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    async with Shop(env, sqlite_url, tmp_path, enabled=("browse_abandonment",)) as shop:
        yield shop


@pytest.fixture
def c() -> str:
    """A new customer per test: the time-skipping server is shared by the session."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def customer(shop: Shop, c: str, **traits: Any) -> None:
    await shop.identify(c, **{"email": f"{c}@example.com", "firstName": "Ana", **traits})


async def view(shop: Shop, c: str, product: dict[str, Any]) -> list[str]:
    """A Product Viewed; the workflow IDs it started (or signalled)."""
    return (await shop.track(c, "Product Viewed", **product)).started


async def order(
    shop: Shop, c: str, order_id: str, *products: dict[str, Any], days_ago: float = 0
) -> None:
    """An Order Completed; ``days_ago`` imports it as past history (no journey of its own)."""
    at = await shop.tick() - timedelta(days=days_ago)
    await shop.send(
        {
            "type": "track",
            "userId": c,
            "event": "Order Completed",
            "timestamp": at.isoformat(),
            "properties": {"order_id": order_id, "products": list(products)},
        }
    )


def shown(text: str) -> tuple[list[str], list[str]]:
    """The products an e-mail lists, by name: (its own, then the recommendations)."""
    own, _, recommended = text.partition("You might also like")

    def names(part: str) -> list[str]:
        return [line[2:].split(":")[0] for line in part.splitlines() if line.startswith("- ")]

    return names(own), names(recommended)


async def result(shop: Shop, c: str) -> JourneyResult:
    return await shop.handle(browse_abandonment_id(c)).result()


async def test_views_get_the_products_20_min_after_the_last_then_an_offer_a_day_later(
    env: WorkflowEnvironment, store_url: str, tmp_path: Path, c: str
) -> None:
    async with Shop(env, store_url, tmp_path, enabled=("browse_abandonment",)) as shop:
        await order(shop, f"{c}-x", f"ox-{c}", SCARF, BEANIE, days_ago=30)  # someone else's
        await customer(shop, c)
        start = await shop.now()
        assert await view(shop, c, SCARF) == [browse_abandonment_id(c)]
        await shop.sleep(minutes=5)
        await view(shop, c, SILK)
        await shop.sleep(minutes=5)
        await view(shop, c, SCARF)
        await shop.sleep(minutes=19)
        assert shop.outbox_mail() == []  # 29 min after the first view, 19 after the last
        await shop.sleep(days=7)

        mail = shop.outbox_mail()
        assert [(m.to, m.step) for m in mail] == [
            (f"Ana <{c}@example.com>", "viewed"),
            (f"Ana <{c}@example.com>", "offer"),
        ]
        viewed, offer = mail
        assert viewed.at - start == pytest.approx(timedelta(minutes=30), abs=SECONDS)
        assert offer.at - viewed.at == pytest.approx(timedelta(hours=24), abs=SECONDS)
        assert viewed.subject == "Ana, did something catch your eye?"
        # Most recently viewed first, each once.
        assert shown(viewed.text) == (["Wool scarf", "Silk scarf"], [])
        assert "Wool scarf: €30.00" in viewed.text and "Silk scarf: €40.00" in viewed.text
        assert offer.subject.startswith("10% off what caught your eye")
        coupon = next(row.coupon_code for row in shop.ledger() if row.step == "offer")
        assert coupon and coupon in offer.text
        assert shown(offer.text) == (["Wool scarf", "Silk scarf"], ["Knit beanie"])
        assert await result(shop, c) == JourneyResult(
            exit_reason="completed", sent=["viewed", "offer"]
        )

        if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES") and store_url.startswith("sqlite"):
            history = await shop.handle(browse_abandonment_id(c)).fetch_history()
            (HISTORIES / "browse_abandonment-completed-2026-11.json").write_text(history.to_json())


@pytest.mark.parametrize(
    ("after", "event", "props", "reason", "sent"),
    [
        (timedelta(minutes=10), "Product Added", {**SCARF, "cart_id": "k"}, "carted", []),
        (timedelta(hours=2), "Product Added", {**SCARF, "cart_id": "k"}, "carted", ["viewed"]),
        (timedelta(minutes=10), "Order Completed", {"order_id": "o", "total": 30}, "purchase", []),
        (timedelta(hours=2), "Order Completed", {"order_id": "o"}, "purchase", ["viewed"]),
    ],
    ids=["added-before-first", "added-between", "ordered-before-first", "ordered-between"],
)
async def test_a_cart_or_an_order_ends_the_series_at_once(
    shop: Shop,
    c: str,
    after: timedelta,
    event: str,
    props: dict[str, Any],
    reason: str,
    sent: list[str],
) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(seconds=after.total_seconds())
    if "order_id" in props:
        props = {**props, "order_id": f"{props['order_id']}-{c}", "products": [SCARF]}
    await shop.track(c, event, **props)
    await shop.sleep(days=7)

    assert [m.step for m in shop.outbox_mail()] == sent
    assert await result(shop, c) == JourneyResult(exit_reason=reason, sent=sent)


async def test_the_cart_journey_takes_over_from_a_product_added(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, c: str
) -> None:
    enabled = ("browse_abandonment", "abandoned_cart")
    async with Shop(env, sqlite_url, tmp_path, enabled=enabled) as shop:
        await customer(shop, c)
        start = await shop.now()
        await view(shop, c, SCARF)
        await view(shop, c, SILK)
        await shop.sleep(minutes=10)
        await shop.track(c, "Product Added", **SILK, cart_id=f"k-{c}")
        await shop.sleep(days=3)

        mail = shop.outbox_mail()
        assert [m.step for m in mail] == ["reminder", "incentive"]
        assert mail[0].at - start == pytest.approx(timedelta(minutes=40), abs=SECONDS)
        assert await result(shop, c) == JourneyResult(exit_reason="carted", sent=[])


@pytest.mark.parametrize("lost", ["converted", "carted"])
async def test_a_lost_exit_signal_still_stops_the_next_e_mail(
    shop: Shop, c: str, lost: str
) -> None:
    """The order or the cart is in the store, its signal never came: the send re-checks."""
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(hours=2)
    now = await shop.now()
    with shop.sessions() as session:
        if lost == "converted":
            session.add(Order(id=f"o-{c}", customer_id=c, placed_at=now))
        else:
            cart = Cart(id=f"k-{c}", customer_id=c, last_activity_at=now)
            cart.lines.append(CartLine(product_id=SCARF["product_id"]))
            session.add(cart)
        session.commit()
    await shop.sleep(days=2)

    assert [m.step for m in shop.outbox_mail()] == ["viewed"]
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("viewed", "sent", None),
        ("offer", "skipped", lost),
    ]
    assert await result(shop, c) == JourneyResult(exit_reason=lost, sent=["viewed"])


@pytest.mark.parametrize("after", [timedelta(minutes=10), timedelta(hours=2)])
async def test_unsubscribe_ends_the_series(shop: Shop, c: str, after: timedelta) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(seconds=after.total_seconds())
    await end_journeys(shop.env.client, c, await shop.now())
    await shop.sleep(days=7)

    sent = ["viewed"] if after > timedelta(minutes=20) else []
    assert [m.step for m in shop.outbox_mail()] == sent
    assert await result(shop, c) == JourneyResult(exit_reason="unsubscribed", sent=sent)


async def test_one_series_a_week_then_a_new_one_for_a_new_visit(shop: Shop, c: str) -> None:
    await customer(shop, c)
    start = await shop.now()
    await view(shop, c, SCARF)
    await shop.sleep(hours=2)
    assert await view(shop, c, SILK) == []  # mailed already: the running series is not told
    await shop.sleep(days=3)
    assert await view(shop, c, SILK) == []  # inside the cool-down
    await shop.sleep(days=5)
    assert [m.step for m in shop.outbox_mail()] == ["viewed", "offer"]
    assert all(shown(m.text)[0] == ["Wool scarf"] for m in shop.outbox_mail())
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["viewed", "offer"])

    again = await shop.now()  # 8 days 2 h after the first visit, a week after its last e-mail
    assert await view(shop, c, SILK) == [browse_abandonment_id(c)]
    await shop.sleep(days=2)

    mail = shop.outbox_mail()
    assert [m.step for m in mail] == ["viewed", "offer", "viewed", "offer"]
    assert mail[0].at - start == pytest.approx(timedelta(minutes=20), abs=SECONDS)
    assert mail[2].at - again == pytest.approx(timedelta(minutes=20), abs=SECONDS)
    assert mail[3].at - again == pytest.approx(timedelta(hours=24, minutes=20), abs=SECONDS)
    assert shown(mail[2].text)[0] == ["Silk scarf"]
    assert await result(shop, c) == JourneyResult(exit_reason="completed", sent=["viewed", "offer"])


async def test_a_series_that_mailed_nothing_does_not_hold_the_next_one_back(
    shop: Shop, c: str
) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(minutes=5)
    await shop.track(c, "Product Added", **SCARF, cart_id=f"k-{c}")
    await shop.track(c, "Product Removed", product_id=SCARF["product_id"], cart_id=f"k-{c}")
    await shop.sleep(hours=1)
    assert await view(shop, c, SILK) == [browse_abandonment_id(c)]
    await shop.sleep(days=2)

    assert [(m.step, shown(m.text)[0]) for m in shop.outbox_mail()] == [
        ("viewed", ["Silk scarf"]),
        ("offer", ["Silk scarf"]),
    ]


async def test_nobody_who_ordered_in_the_last_10_days(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await order(shop, c, f"o-{c}", MUG)
    await shop.sleep(days=9, hours=23)
    assert await view(shop, c, SCARF) == []
    await shop.sleep(days=2)
    assert shop.outbox_mail() == []

    assert await view(shop, c, SCARF) == [browse_abandonment_id(c)]
    await shop.sleep(days=2)
    assert [m.step for m in shop.outbox_mail()] == ["viewed", "offer"]


async def test_nobody_with_items_in_the_cart(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await shop.track(c, "Product Added", **SILK, cart_id=f"k-{c}")
    assert await view(shop, c, SCARF) == []
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert shop.ledger() == []


async def test_a_product_viewed_twice_beside_a_cart_still_gets_its_e_mails(
    shop: Shop, c: str
) -> None:
    await customer(shop, c)
    await shop.track(c, "Product Added", **SILK, cart_id=f"k-{c}")
    assert await view(shop, c, SCARF) == []  # once: the cart journey's customer
    await shop.sleep(hours=3)
    assert await view(shop, c, SILK) == []  # in the cart: that journey shows it
    assert await view(shop, c, SILK) == []
    again = await shop.now()
    assert await view(shop, c, SCARF) == [browse_abandonment_id(c)]  # twice: wanted, left out
    await shop.sleep(days=2)

    mail = shop.outbox_mail()
    assert [(m.step, shown(m.text)[0]) for m in mail] == [
        ("viewed", ["Wool scarf"]),
        ("offer", ["Wool scarf"]),
    ]
    assert mail[0].at - again == pytest.approx(timedelta(minutes=20), abs=SECONDS)
    assert mail[1].at - again == pytest.approx(timedelta(hours=24, minutes=20), abs=SECONDS)


async def test_views_beside_a_cart_count_only_inside_the_window(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)  # no cart yet: a series starts, mailed 20 min later
    await shop.track(c, "Product Added", **SILK, cart_id=f"k-{c}")  # ends it, carted
    await shop.sleep(hours=25)
    await shop.track(c, "Product Added", **BEANIE, cart_id=f"k-{c}")
    assert await view(shop, c, SCARF) == []  # the first view is a day old: once in the window
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert await result(shop, c) == JourneyResult(exit_reason="carted", sent=[])


async def test_a_holdout_series_counts_for_the_cool_down(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    journeys = load_journeys()
    assert journeys.browse_abandonment is not None
    browse = journeys.browse_abandonment.model_copy(update={"holdout": 0.5})
    fresh = (f"c-{uuid.uuid4().hex[:8]}" for _ in range(1000))
    c = next(cid for cid in fresh if in_holdout("browse_abandonment", cid, 0.5))
    config = journeys.model_copy(update={"browse_abandonment": browse})
    async with Shop(
        env, sqlite_url, tmp_path, journeys=config, enabled=("browse_abandonment",)
    ) as shop:
        await customer(shop, c)
        assert await view(shop, c, SCARF) == [browse_abandonment_id(c)]
        await shop.sleep(hours=1)
        assert await result(shop, c) == JourneyResult(exit_reason="holdout", sent=[])
        # Held out like a mailed customer is held back: one series a week, not one a visit.
        assert await view(shop, c, SILK) == []
        await shop.sleep(days=6)
        assert await view(shop, c, SILK) == []
        await shop.sleep(days=1, hours=1)
        assert await view(shop, c, SILK) == [browse_abandonment_id(c)]
        await shop.sleep(hours=1)

        assert shop.outbox_mail() == []
        assert [(row.step, row.status, row.reason) for row in shop.ledger()] == [
            ("viewed", "skipped", "holdout"),
            ("viewed", "skipped", "holdout"),
        ]


async def test_a_cart_left_long_ago_does_not_hold_back_todays_browsing(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await shop.track(c, "Product Added", **SILK, cart_id=f"k-{c}")
    await shop.sleep(days=3)  # the cart still has the silk scarf; its journey is long over

    assert await view(shop, c, SCARF) == [browse_abandonment_id(c)]
    await shop.sleep(minutes=21)
    assert [m.step for m in shop.outbox_mail()] == ["viewed"]


@pytest.mark.parametrize(
    "traits",
    [{"marketing_consent": False}, {"email": None}],
    ids=["no-consent", "no-email"],
)
async def test_nobody_we_may_not_mail(shop: Shop, c: str, traits: dict[str, Any]) -> None:
    await shop.identify(c, **{"email": f"{c}@example.com", **traits})
    assert await view(shop, c, SCARF) == []
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert shop.ledger() == []


@pytest.mark.parametrize("reason", ["unsubscribed", "bounced"])
async def test_nobody_suppressed(shop: Shop, c: str, reason: str) -> None:
    """Every view would start a journey that sleeps 20 min only to be stopped at the send."""
    await customer(shop, c)
    with shop.sessions() as session:
        session.add(
            Suppression(
                customer_id=c if reason == "unsubscribed" else None,
                email=f"{c}@example.com" if reason == "bounced" else None,
                reason=reason,
                source="link" if reason == "unsubscribed" else "sendgrid",
                created_at=await shop.now(),
            )
        )
        session.commit()
    assert await view(shop, c, SCARF) == []
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert shop.ledger() == []


async def test_out_of_stock_products_are_not_shown(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await view(shop, c, {**SCARF, "stock": 0})
    await view(shop, c, {**SILK, "stock": 3})
    await shop.sleep(days=2)

    assert [(m.step, shown(m.text)[0]) for m in shop.outbox_mail()] == [
        ("viewed", ["Silk scarf"]),
        ("offer", ["Silk scarf"]),
    ]
    assert "Wool scarf" not in "".join(m.text for m in shop.outbox_mail())


async def test_sold_out_after_the_first_e_mail_means_no_offer(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(hours=2)
    await view(shop, f"{c}-other", {**SCARF, "stock": 0})  # the catalogue says: sold out
    await shop.sleep(days=2)

    assert [m.step for m in shop.outbox_mail()] == ["viewed"]
    assert await result(shop, c) == JourneyResult(exit_reason="nothing_to_show", sent=["viewed"])


async def test_everything_out_of_stock_sends_nothing(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await view(shop, c, {**SCARF, "stock": 0})
    await view(shop, c, {**SILK, "stock": 0})
    await shop.sleep(days=2)

    assert shop.outbox_mail() == []
    assert [(r.step, r.status, r.reason) for r in shop.ledger()] == [
        ("viewed", "skipped", "nothing_to_show")
    ]
    assert await result(shop, c) == JourneyResult(exit_reason="nothing_to_show", sent=[])


async def test_offer_recommends_neither_the_viewed_nor_the_bought_nor_the_out_of_stock(
    env: WorkflowEnvironment, store_url: str, tmp_path: Path, c: str
) -> None:
    async with Shop(env, store_url, tmp_path, enabled=("browse_abandonment",)) as shop:
        # Other customers bought the scarf with a beanie (twice), with the silk scarf, the
        # mug and the gloves; the scarf clip shares the scarf's category.
        await order(shop, f"{c}-x", f"ox-{c}", SCARF, BEANIE, MUG, days_ago=40)
        await order(shop, f"{c}-y", f"oy-{c}", SCARF, BEANIE, SILK, GLOVES, days_ago=30)
        await view(shop, f"{c}-z", CAP)
        await customer(shop, c)
        await order(shop, c, f"o-{c}", MUG, days_ago=20)  # the customer has the mug
        await view(shop, c, SCARF)
        await view(shop, c, SILK)
        await shop.sleep(days=2)

        viewed, offer = shop.outbox_mail()
        assert shown(viewed.text) == (["Silk scarf", "Wool scarf"], [])
        # Bought together first, then the same category; the mug (bought), the gloves (out
        # of stock) and the silk scarf (viewed) never, though each was bought with the scarf.
        assert shown(offer.text) == (["Silk scarf", "Wool scarf"], ["Knit beanie", "Scarf clip"])
        (row,) = [r for r in shop.ledger() if r.step == "offer"]
        assert row.products == {
            "featured": ["silk-2", "scarf-1"],
            "recommended": ["beanie-3", "cap-4"],
        }


async def test_status_shows_the_first_e_mail_moving_with_each_view(shop: Shop, c: str) -> None:
    await customer(shop, c)
    start = await shop.now()
    await view(shop, c, SCARF)
    handle = shop.handle(browse_abandonment_id(c))
    status = await handle.query("status")
    assert (status["state"], status["next_step"]) == ("waiting", "viewed")
    await shop.sleep(minutes=15)
    await view(shop, c, SILK)
    await shop.sleep(minutes=1)
    status = await handle.query("status")
    assert status["next_step"] == "viewed"
    assert status["waiting_for"] == "a cart or an order"
    due = datetime.fromisoformat(status["next_send_at"])
    assert due - start == pytest.approx(timedelta(minutes=35), abs=SECONDS)
    await shop.sleep(days=2)


async def test_fresh_history_replays(shop: Shop, c: str) -> None:
    await customer(shop, c)
    await view(shop, c, SCARF)
    await shop.sleep(hours=2)
    await shop.track(c, "Order Completed", order_id=f"o-{c}", products=[SCARF])
    await result(shop, c)
    history = await shop.handle(browse_abandonment_id(c)).fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
