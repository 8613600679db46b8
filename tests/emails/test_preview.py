"""``triggermail preview``: what a marketer sees before a customer does."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from triggermail.ops.cli import app
from triggermail.store import (
    Cart,
    CartLine,
    Coupon,
    Customer,
    Order,
    OrderLine,
    Product,
    make_engine,
    make_session_factory,
)

runner = CliRunner()


def test_sample_preview_writes_html_and_text_and_prints_the_subject(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["preview", "abandoned_cart", "incentive", "--locale", "fr-CA", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "10\xa0% de réduction sur votre panier" in result.output
    assert "Locale: fr" in result.output
    html = (tmp_path / "abandoned_cart" / "incentive.fr.html").read_text()
    text = (tmp_path / "abandoned_cart" / "incentive.fr.txt").read_text()
    assert '<html lang="fr-CA"' in html and "SAMPLE-7KQ2XW" in html
    assert text.startswith("Subject: 10\xa0% de réduction") and "Finaliser ma commande" in text


def test_gallery_links_every_step_in_every_locale(tmp_path: Path) -> None:
    result = runner.invoke(app, ["preview", "--all", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    index = (tmp_path / "index.html").read_text()
    for step in ("reminder", "incentive"):
        for locale in ("en", "fr", "ja", "uk"):
            for part in ("html", "txt"):
                assert (tmp_path / "abandoned_cart" / f"{step}.{locale}.{part}").exists()
                assert f'href="abandoned_cart/{step}.{locale}.{part}"' in index
    assert "陽菜様、カートに商品が残っています" in index


def test_customer_preview_uses_the_store_and_creates_no_coupon(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        session.add(Customer(id="c-9", email="o@example.com", first_name="Оксана", locale="uk-UA"))
        session.add(Product(id="mug", name="Enamel mug", price=Decimal("12.00")))
        session.flush()
        session.add(
            Cart(
                id="k-9",
                customer_id="c-9",
                last_activity_at=datetime(2026, 11, 20, tzinfo=UTC),
                lines=[CartLine(product_id="mug", quantity=3, price=Decimal("12.00"))],
            )
        )
        session.commit()
    monkeypatch.setenv("TRIGGERMAIL_DATABASE_URL", sqlite_url)

    result = runner.invoke(
        app, ["preview", "abandoned_cart", "incentive", "--customer", "c-9", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "Знижка 10% на ваш кошик" in result.output
    text = (tmp_path / "abandoned_cart" / "incentive.uk.txt").read_text()
    assert "Оксана, ми зберігаємо ваш кошик" in text
    assert "Enamel mug × 3: 36,00\xa0EUR" in text and "PREVIEW-CODE" in text
    assert "https://shop.example/products/mug?utm_source=triggermail" in text
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Coupon)) == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["abandoned_cart", "nope", "--sample"], "its steps are reminder, incentive"),
        (["loyalty", "offer"], "no journey 'loyalty'"),
        (["abandoned_cart", "reminder", "--customer", "nobody"], "no customer 'nobody'"),
    ],
)
def test_preview_says_what_exists(
    args: list[str], message: str, tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERMAIL_DATABASE_URL", sqlite_url)
    result = runner.invoke(app, ["preview", *args, "--out", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_preview_opens_the_browser_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(
        app, ["preview", "abandoned_cart", "reminder", "--out", str(tmp_path), "--open"]
    )
    assert result.exit_code == 0, result.output
    assert opened == [(tmp_path / "abandoned_cart" / "reminder.en.html").resolve().as_uri()]


def test_customer_preview_of_an_order_journey_shows_their_latest_order(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    with sessions() as session:
        session.add(Customer(id="c-7", email="b@example.com", first_name="Ben"))
        session.add(Product(id="tee", name="Organic tee", price=Decimal("20"), category="tops"))
        session.add(Product(id="cap", name="Field cap", price=Decimal("15"), category="tops"))
        session.flush()
        placed = datetime(2026, 11, 1, tzinfo=UTC)
        session.add(
            Order(
                id="o-old", customer_id="c-7", placed_at=placed, lines=[OrderLine(product_id="cap")]
            )
        )
        session.add(
            Order(
                id="o-7",
                customer_id="c-7",
                placed_at=placed.replace(day=10),
                lines=[OrderLine(product_id="tee", quantity=2, price=Decimal("20"))],
            )
        )
        session.commit()
    monkeypatch.setenv("TRIGGERMAIL_DATABASE_URL", sqlite_url)

    for step, journey in (("thank_you", "post_purchase"), ("ask", "review_request")):
        result = runner.invoke(
            app, ["preview", journey, step, "--customer", "c-7", "--out", str(tmp_path)]
        )
        assert result.exit_code == 0, result.output
        text = (tmp_path / journey / f"{step}.en.txt").read_text()
        assert "o-7" in text and "Organic tee" in text and "Field cap" not in text
    engine.dispose()


def test_customer_preview_says_when_the_customer_would_get_no_such_email(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    with make_session_factory(engine)() as session:
        session.add(Customer(id="c-8", email="c@example.com"))
        session.commit()
    engine.dispose()
    monkeypatch.setenv("TRIGGERMAIL_DATABASE_URL", sqlite_url)

    result = runner.invoke(
        app,
        ["preview", "browse_abandonment", "viewed", "--customer", "c-8", "--out", str(tmp_path)],
        terminal_width=200,
    )
    assert result.exit_code == 2
    assert "would not get this e-mail now" in " ".join(result.output.split())


def test_a_variant_previews_with_its_own_subject_and_offer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = Path(__file__).parent.parent.parent / "triggermail" / "journeys.toml"
    journeys = tmp_path / "journeys.toml"
    journeys.write_text(
        defaults.read_text().replace(
            'coupon_valid = "48h"\n',
            'coupon_valid = "48h"\n\n[[abandoned_cart.steps.variants]]\nname = "deeper"\n'
            "coupon_percent = 20\n"
            'subject = "{{ coupon.percent }}% off, {{ customer.first_name }}"\n',
            1,
        )
    )
    monkeypatch.setenv("TRIGGERMAIL_JOURNEYS", str(journeys))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["preview", "abandoned_cart", "incentive", "--variant", "deeper", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Subject: 20% off, " in result.output
    assert "20%" in (out / "abandoned_cart" / "incentive.deeper.en.txt").read_text()

    missing = runner.invoke(app, ["preview", "abandoned_cart", "incentive", "--variant", "nope"])
    assert missing.exit_code == 2
    assert "has no variant 'nope'; its variants are control, deeper" in " ".join(
        missing.output.split()
    )

    gallery = runner.invoke(app, ["preview", "--all", "--out", str(out)])
    assert gallery.exit_code == 0, gallery.output
    assert "variant deeper" in (out / "index.html").read_text()
