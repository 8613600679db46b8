"""The attribution rules, exactly: last click within 5 days, else last open within 1 day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.report.builders import Store, at
from triggermail.analytics.attribution import attribute_orders, credit, order_value
from triggermail.journeys import Attribution, JourneysConfigError, load_journeys
from triggermail.store import Order

RULES = Attribution()
NO_OPENS = Attribution(open_tracking=False)


def credited(session: Session, rules: Attribution = RULES) -> dict[str, tuple[str, str]]:
    """Order id → (credited send id, rule), for the orders of the first 30 days."""
    session.flush()
    found = attribute_orders(session, since=at(), until=at(days=30), rules=rules)
    return {a.order_id: (a.send_id, a.rule) for a in found}


def test_a_click_beats_a_later_open(session: Session, store: Store) -> None:
    clicked = store.send("c-1", "reminder", at(hours=1))
    store.event(clicked, "click", at(hours=2))
    opened = store.send("c-1", "incentive", at(days=1))
    store.event(opened, "open", at(days=1, hours=1))
    order = store.order("c-1", at(days=1, hours=2), revenue="40")
    assert credited(session) == {order: (clicked, "click")}


def test_the_last_click_wins_by_when_it_happened_not_when_the_email_went(
    session: Session, store: Store
) -> None:
    older = store.send("c-1", "reminder", at(hours=1))
    newer = store.send("c-1", "incentive", at(days=1))
    store.event(newer, "click", at(days=1, hours=1))
    store.event(older, "click", at(days=2))  # the older e-mail, clicked again later
    order = store.order("c-1", at(days=2, hours=1), revenue="40")
    assert credited(session) == {order: (older, "click")}


def test_click_window_edges(session: Session, store: Store) -> None:
    send = store.send("c-1", "reminder", at())
    store.event(send, "click", at(hours=1))
    on_edge = store.order("c-1", at(hours=1, days=5), revenue="10")  # exactly 5 days later
    store.order("c-2", at(days=6), revenue="10")  # another customer: never credited
    other = store.send("c-3", "reminder", at())
    store.event(other, "click", at(hours=1))
    past = store.order("c-3", at(hours=1, days=5, seconds=1), revenue="10")
    result = credited(session)
    assert result[on_edge] == (send, "click")
    assert past not in result
    assert len(result) == 1


def test_open_window_edges_and_a_click_outside_its_window_falls_back_to_an_open(
    session: Session, store: Store
) -> None:
    first = store.send("c-1", "reminder", at())
    store.event(first, "click", at(hours=1))
    second = store.send("c-1", "incentive", at(days=6))
    store.event(second, "open", at(days=6, hours=1))
    on_edge = store.order("c-1", at(days=7, hours=1), revenue="10")  # open exactly 1 day ago
    late = store.send("c-2", "reminder", at(days=6))
    store.event(late, "open", at(days=6, hours=1))
    past = store.order("c-2", at(days=7, hours=1, seconds=1), revenue="10")
    result = credited(session)
    assert result == {on_edge: (second, "open")}
    assert past not in result


def test_a_click_or_open_after_the_order_earns_nothing(session: Session, store: Store) -> None:
    send = store.send("c-1", "reminder", at())
    order = store.order("c-1", at(hours=1), revenue="10")
    store.event(send, "click", at(hours=2))
    store.event(send, "open", at(hours=2))
    assert credited(session) == {}
    assert order


def test_without_open_tracking_the_last_email_received_counts(
    session: Session, store: Store
) -> None:
    delivered = store.send("c-1", "reminder", at())
    store.event(delivered, "delivered", at(minutes=1))
    later = store.send("c-1", "incentive", at(hours=2))  # no delivered event: sent_at counts
    order = store.order("c-1", at(hours=3), revenue="10")
    skipped = store.send("c-2", "reminder", at(), status="skipped", reason="holdout")
    store.order("c-2", at(hours=1), revenue="10")
    assert credited(session, RULES) == {}  # with open tracking on, receipt alone is no credit
    assert credited(session, NO_OPENS) == {order: (later, "received")}
    assert skipped


def test_refunded_and_cancelled_orders_earn_nothing_and_revenue_falls_back_to_total(
    session: Session, store: Store
) -> None:
    send = store.send("c-1", "reminder", at())
    store.event(send, "click", at(minutes=5))
    store.order("c-1", at(hours=1), revenue="99", status="refunded")
    store.order("c-1", at(hours=2), revenue="98", status="cancelled")
    kept = store.order("c-1", at(hours=3), total="24.90", currency="USD")
    session.flush()
    found = attribute_orders(session, since=at(), until=at(days=30), rules=RULES)
    assert [(a.order_id, a.revenue, a.currency) for a in found] == [(kept, Decimal("24.90"), "USD")]
    by_total = session.get(Order, kept)
    assert by_total is not None and order_value(by_total) == Decimal("24.90")


def test_two_currencies_are_credited_apart(session: Session, store: Store) -> None:
    send = store.send("c-1", "reminder", at())
    store.event(send, "click", at(minutes=5))
    store.order("c-1", at(hours=1), revenue="10.50", currency="EUR")
    store.order("c-1", at(hours=2), revenue="20", currency="GBP")
    session.flush()
    found = attribute_orders(session, since=at(), until=at(days=30), rules=RULES)
    assert sorted((a.currency, a.revenue, a.step) for a in found) == [
        ("EUR", Decimal("10.50"), "reminder"),
        ("GBP", Decimal("20.00"), "reminder"),
    ]


def test_credit_breaks_ties_by_send_id_whatever_the_order_of_touches() -> None:
    from triggermail.analytics.attribution import Touch

    a = Touch("a", "abandoned_cart", "reminder", "control", "click", at())
    b = Touch("b", "abandoned_cart", "incentive", "control", "click", at())
    assert credit(at(hours=1), [a, b], RULES) == credit(at(hours=1), [b, a], RULES) == b
    assert credit(at(hours=1), [a], Attribution(click_window=timedelta(minutes=59))) is None


def test_windows_come_from_the_journeys_toml(tmp_path: Path) -> None:
    assert load_journeys().attribution == Attribution(
        click_window=timedelta(days=5), open_window=timedelta(days=1), open_tracking=True
    )
    text = resources.files("triggermail").joinpath("journeys.toml").read_text()
    mine = tmp_path / "journeys.toml"
    mine.write_text(text.replace('click_window = "5d"', 'click_window = "7d"'))
    assert load_journeys(mine).attribution.click_window == timedelta(days=7)
    mine.write_text(text.replace('click_window = "5d"', 'click_window = "a week"'))
    with pytest.raises(JourneysConfigError, match=r"\[attribution\.click_window\]"):
        load_journeys(mine)
