"""`triggermail report` figures against a hand-built store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tests.report.builders import Store, at, rows
from triggermail.analytics.report import build_report, wilson
from triggermail.analytics.report_display import report_html
from triggermail.analytics.report_models import Report
from triggermail.journeys import JourneysConfig
from triggermail.store import make_engine, make_session_factory, utcnow

SCHEMA = Path(__file__).parents[2] / "docs" / "report.schema.json"


def shop(store: Store) -> None:
    """Thirty days of abandoned carts, a holdout, a welcome A/B test, orders before and in."""
    # c-1: reminder clicked, ordered within the hour (EUR): converted, credited to the reminder.
    r1 = store.send("c-1", "reminder", at(hours=1))
    for kind, minutes in (("delivered", 1), ("open", 50), ("click", 60)):
        store.event(r1, kind, at(hours=1, minutes=minutes))
    store.cart("c-1", "k-1", at(minutes=30), "ordered")
    store.order("c-1", at(hours=3), revenue="100")
    # c-2: reminder delivered, incentive opened, ordered an hour later in USD (no revenue
    # figure: the total counts).
    r2 = store.send("c-2", "reminder", at(hours=1))
    store.event(r2, "delivered", at(hours=1, minutes=1))
    i2 = store.send("c-2", "incentive", at(hours=25))
    store.event(i2, "delivered", at(hours=25, minutes=1))
    store.event(i2, "open", at(hours=26))
    store.cart("c-2", "k-2", at(minutes=30), "ordered")
    store.order("c-2", at(hours=27), total="50", currency="USD")
    # c-3: both e-mails, no order; unsubscribed from the incentive.
    store.send("c-3", "reminder", at(hours=1))
    i3 = store.send("c-3", "incentive", at(hours=25))
    store.unsubscribe("c-3", i3, at(hours=26))
    store.cart("c-3", "k-3", at(minutes=30), "open")
    # c-4: ordered after the reminder, then refunded: neither converted nor revenue.
    r4 = store.send("c-4", "reminder", at(hours=1))
    store.event(r4, "click", at(hours=2))
    store.cart("c-4", "k-4", at(minutes=30), "ordered")
    store.order("c-4", at(hours=3), revenue="70", status="refunded")
    # Holdout: four entries never mailed, one of them ordered anyway.
    for customer in ("h-1", "h-2", "h-3", "h-4"):
        store.send(customer, "reminder", at(hours=2), status="skipped", reason="holdout")
    store.order("h-1", at(hours=5), revenue="30")
    # An entry that began before the period is not this period's, even its later e-mail.
    store.send("c-7", "reminder", at(hours=-2))
    store.send("c-7", "incentive", at(hours=22))
    # Welcome: an A/B test on its first step; only variant b's customer buys within the window.
    store.send("w-1", "welcome", at(days=2), journey="welcome")
    store.send("w-2", "welcome", at(days=2), journey="welcome", variant="b")
    store.order("w-2", at(days=3), revenue="20")
    # The previous 30 days: c-1, c-2 and c-3 bought; c-4's order was cancelled.
    for customer in ("c-1", "c-2", "c-3"):
        store.order(customer, at(days=-10), revenue="5")
    store.order("c-4", at(days=-10), revenue="5", status="cancelled")
    store.session.commit()


def report(session: Session, config: JourneysConfig, **kwargs: str) -> Report:
    return build_report(session, config, since=at(), until=at(days=30), **kwargs)


def test_figures_per_journey_step_and_variant(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    shop(store)
    built = report(session, config)
    assert [j.journey for j in built.journeys] == ["abandoned_cart", "welcome"]
    cart = rows(built, "abandoned_cart")
    assert set(cart) == {("reminder", "control"), ("incentive", "control"), (None, None),
                         (None, "holdout")}  # fmt: skip

    def figures(row: object) -> tuple[int, ...]:
        names = ("entered", "sent", "delivered", "opened", "clicked", "converted")
        return tuple(getattr(row, name) for name in (*names, "unsubscribed", "attributed_orders"))

    assert figures(cart[("reminder", "control")]) == (4, 4, 2, 1, 2, 2, 0, 1)
    assert cart[("reminder", "control")].revenue == {"EUR": "100.00"}
    assert figures(cart[("incentive", "control")]) == (2, 2, 1, 1, 0, 1, 1, 1)
    assert cart[("incentive", "control")].revenue == {"USD": "50.00"}

    total = cart[(None, None)]
    assert figures(total) == (4, 6, 3, 2, 2, 2, 1, 2)
    assert total.revenue == {"EUR": "100.00", "USD": "50.00"}
    assert total.conversion_rate == 0.5
    assert total.conversion_ci is not None
    assert (total.conversion_ci.low, total.conversion_ci.high) == pytest.approx(wilson(2, 4))
    funnel = next(j for j in built.journeys if j.journey == "abandoned_cart").funnel
    # Entries, each once per stage: c-4's click counts as an open and a delivery.
    assert funnel.model_dump() == {
        "entered": 4,
        "sent": 4,
        "delivered": 3,
        "opened": 3,
        "clicked": 2,
        "converted": 2,
    }
    holdout = cart[(None, "holdout")]
    assert (holdout.entered, holdout.sent, holdout.converted) == (4, 0, 1)
    assert total.lift == pytest.approx(0.5 / 0.25 - 1)
    assert cart[("reminder", "control")].lift == pytest.approx(1.0)  # the first step's
    assert cart[("incentive", "control")].lift is None  # later steps: not like for like

    recovery = next(j for j in built.journeys if j.journey == "abandoned_cart").recovery
    assert recovery is not None
    assert (recovery.carts_entered, recovery.carts_recovered, recovery.rate) == (4, 2, 0.5)

    welcome = rows(built, "welcome")
    assert (welcome[("welcome", "control")].converted, welcome[("welcome", "b")].converted) == (
        0,
        1,
    )
    assert welcome[("welcome", "b")].revenue == {}  # no click, open or receipt tracked: no credit
    assert welcome[(None, None)].lift is None  # no holdout: "—"

    assert (built.orders.orders, built.orders.attributed_orders) == (4, 2)
    assert built.orders.revenue == {"EUR": "150.00", "USD": "50.00"}
    assert built.orders.attributed_revenue == {"EUR": "100.00", "USD": "50.00"}
    retention = built.retention
    assert (retention.previous_customers, retention.returning_customers) == (3, 2)
    assert retention.rate == pytest.approx(2 / 3)


def test_one_journey_only_and_an_empty_period(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    shop(store)
    only = report(session, config, journey="welcome")
    assert [j.journey for j in only.journeys] == ["welcome"]
    empty = build_report(session, config, since=at(days=100), until=at(days=130))
    assert empty.journeys == [] and empty.orders.orders == 0
    assert empty.retention.rate is None and empty.retention.ci is None


def test_rows_are_timed_by_when_the_journey_asked_not_when_the_database_wrote_them(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    # Written by a database whose clock is a year behind the journeys' (the time-skipping
    # server), or before due_at existed: both are this period's.
    store.send("c-1", "reminder", at(hours=1), created_at=at(days=-365))
    store.send("c-2", "reminder", at(hours=1), due=False)
    store.send("c-3", "reminder", at(days=-20), created_at=at(hours=1))  # last period's
    session.commit()
    assert rows(report(session, config), "abandoned_cart")[(None, None)].entered == 2


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Table I, method 3 (the score interval without continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_interval_against_published_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    interval = wilson(successes, trials)
    assert interval == pytest.approx((low, high), abs=5e-5)


def test_wilson_of_nothing_is_no_interval() -> None:
    assert wilson(0, 0) is None


def test_json_follows_the_documented_schema(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    shop(store)
    built = report(session, config)
    # The schema in docs/ is the contract: a change to the report's shape must change it.
    assert json.loads(SCHEMA.read_text()) == Report.model_json_schema()
    data = json.loads(built.model_dump_json())
    assert Report.model_validate(data) == built
    assert list(data) == [
        "schema_version",
        "generated_at",
        "since",
        "until",
        "attribution",
        "journeys",
        "orders",
        "retention",
    ]
    assert data["schema_version"] == 1
    assert data["journeys"][0]["total"]["revenue"] == {"EUR": "100.00", "USD": "50.00"}


def test_html_is_one_self_contained_file_with_the_charts(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    shop(store)
    page = report_html(report(session, config))
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", page)
    # The only addresses are the SVG namespaces, which browsers never fetch.
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    assert page.count('<figure class="funnel"><svg') == 2  # a funnel per journey
    assert page.count('<figure class="revenue"><svg') == 1  # welcome earned nothing
    assert "abandoned_cart: attributed revenue per step" in page
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_the_command_prints_tables_json_and_writes_html(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggermail.ops.cli import app

    engine = make_engine(store_url)
    now = utcnow()
    with make_session_factory(engine)() as session:
        store = Store(session)
        send = store.send("c-1", "reminder", now - timedelta(days=2))
        store.event(send, "click", now - timedelta(days=1))
        store.order("c-1", now - timedelta(hours=1), revenue="12.5")
        session.commit()
    engine.dispose()
    monkeypatch.setenv("TRIGGERMAIL_DATABASE_URL", store_url)
    runner = CliRunner()

    text = runner.invoke(app, ["report", "--since", "7d"])
    assert text.exit_code == 0, text.output
    assert "abandoned_cart" in text.output and "€12.50" in text.output

    page = tmp_path / "report.html"
    as_json = runner.invoke(app, ["report", "--json", "--journey", "abandoned_cart",
                                  "--html", str(page)])  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["journeys"][0]["steps"][0]["revenue"] == {"EUR": "12.50"}
    assert "<svg" in page.read_text()

    wrong = runner.invoke(app, ["report", "--since", "a month"])
    assert wrong.exit_code == 2
    unknown = runner.invoke(app, ["report", "--journey", "abandoned_carts"])
    assert unknown.exit_code == 2 and "not a journey" in unknown.output


def test_a_holdout_entry_a_guard_stopped_first_is_still_the_holdouts(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    store.send(
        "h-1", "reminder", at(hours=1), variant="holdout", status="skipped", reason="holdout"
    )
    # The exit signal was lost: the activity found the order and stopped the holdout's row.
    store.send("h-2", "reminder", at(hours=1), variant="holdout", status="skipped",
               reason="converted")  # fmt: skip
    store.order("h-2", at(minutes=50), revenue="10")
    store.send("c-1", "reminder", at(hours=1))
    store.session.commit()

    cart = rows(report(session, config), "abandoned_cart")
    holdout = cart[(None, "holdout")]
    assert (holdout.entered, holdout.converted) == (2, 1)
    assert set(cart) == {("reminder", "control"), (None, None), (None, "holdout")}


def test_a_timing_variant_counts_its_entry_from_its_own_offset(
    session: Session, store: Store, config: JourneysConfig
) -> None:
    cart = config.abandoned_cart
    data = cart.model_dump()
    data["steps"][0]["variants"] = [{"name": "later", "after": "6h"}]
    config = config.model_copy(update={"abandoned_cart": type(cart).model_validate(data)})
    # Entered at 00:00, the variant's reminder went at 06:00; the order at 01:00 came after
    # entry (a purchase exit would have stopped the reminder; this one the signal missed).
    store.send("v-1", "reminder", at(hours=6), variant="later")
    store.order("v-1", at(hours=1), revenue="10")
    store.session.commit()

    built = rows(report(session, config), "abandoned_cart")
    assert built[("reminder", "later")].converted == 1
