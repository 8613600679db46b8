"""What customers read: every step in every locale, formatted their way, safe, and checked
before a worker starts."""

from __future__ import annotations

import html
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from temporalio.testing import WorkflowEnvironment

from activities.filters import _format_money
from activities.rendering import Renderer, TemplateError, link_problems
from activities.samples import sample_context
from activities.transports import OutboxTransport
from tests.emails.snapshots import assert_matches_snapshot
from triggermail.journeys import load_journeys
from triggermail.settings import Settings
from triggermail.store import make_engine, make_session_factory
from worker import build_worker

JOURNEYS = load_journeys()
RENDERER = Renderer(shop_locale="en")
LOCALES = ["en", "fr", "ja", "uk"]
STEPS = [
    (journey, step.name, step.template, step.coupon_percent)
    for journey, config in JOURNEYS.enabled().items()
    for step in config.steps
]
DEFAULTS = Path(__file__).parent.parent.parent / "triggermail" / "journeys.toml"


def context(
    step: str = "reminder", *, locale: str = "en", coupon: int | None = None, **changes: Any
) -> dict[str, Any]:
    ctx = sample_context(JOURNEYS, step=step, coupon_percent=coupon, locale=locale)
    for key, value in changes.items():
        ctx[key] = {**ctx[key], **value}
    return ctx


def broken_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(RENDERER.directory, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# -- every step, every locale ------------------------------------------------------------


def test_the_shops_we_serve_first_have_their_languages() -> None:
    assert RENDERER.locales() == LOCALES


def test_worker_start_check_renders_every_step_in_every_locale() -> None:
    assert RENDERER.check(JOURNEYS) == len(STEPS) * len(LOCALES)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("journey", "step", "template", "coupon"), STEPS)
def test_text_part_matches_its_reviewed_snapshot(
    journey: str, step: str, template: str, coupon: int | None, locale: str
) -> None:
    ctx = sample_context(JOURNEYS, journey=journey, step=step, coupon_percent=coupon, locale=locale)
    rendered = RENDERER.render(template, ctx, locale=locale)
    assert rendered.locale == locale
    assert_matches_snapshot(
        f"{template}.{locale}.txt",
        f"Subject: {rendered.subject}\nPreheader: {rendered.preheader}\n\n{rendered.text}",
    )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("journey", "step", "template", "coupon"), STEPS)
def test_html_and_text_say_the_same_from_one_source(
    journey: str, step: str, template: str, coupon: int | None, locale: str
) -> None:
    ctx = sample_context(JOURNEYS, journey=journey, step=step, coupon_percent=coupon, locale=locale)
    rendered = RENDERER.render(template, ctx, locale=locale)
    assert "<" not in rendered.text  # written as text, not HTML with tags stripped
    visible = html.unescape(re.sub(r"<[^>]+>", " ", rendered.html))
    for line in ctx["cart"]["lines"] if ctx["cart"] else []:
        assert line["name"] in rendered.text and line["name"] in visible
    first_line = rendered.text.splitlines()[0]
    assert first_line in visible  # the heading
    assert f'<html lang="{locale}"' in rendered.html
    assert rendered.preheader and rendered.preheader in visible


# -- the layout ---------------------------------------------------------------------------


def test_html_layout_works_in_mail_clients() -> None:
    rendered = RENDERER.render("abandoned_cart/reminder", context(), locale="en")
    page = rendered.html
    assert 'role="presentation"' in page and '<div class="preheader" style="display: none;' in page
    assert "<!--[if mso]>" in page  # Outlook's fixed-width ghost table
    assert '<meta name="viewport"' in page
    # Rules are inlined on the elements; only the media queries remain in <style>.
    assert 'class="h1" style="margin: 0 0 16px 0;' in page
    styles = re.findall(r"<style>(.*?)</style>", re.sub(r"<!--.*?-->", "", page, flags=re.S), re.S)
    assert len(styles) == 1 and styles[0].strip().startswith("@media only screen")
    assert "Your Shop Ltd, 1 Example Street, London EC1A 1AA" in page
    assert 'href="https://shop.example/account/emails"' in page


def test_branding_comes_from_config() -> None:
    branded = JOURNEYS.shop.model_copy(
        update={
            "branding": JOURNEYS.shop.branding.model_copy(
                update={"logo_url": "https://cdn.example/logo.png", "primary_colour": "#0a7f5a"}
            )
        }
    )
    ctx = context(shop=branded.model_dump())
    html = RENDERER.render("abandoned_cart/reminder", ctx, locale="en").html
    assert '<img src="https://cdn.example/logo.png" width="140" alt="Your Shop"' in html
    assert 'bgcolor="#0a7f5a"' in html and "background-color: #0a7f5a" in html


def test_product_cards_show_image_name_price_and_link() -> None:
    html = RENDERER.render("abandoned_cart/reminder", context(), locale="en").html
    assert 'src="https://shop.example/images/tee-organic.jpg"' in html
    assert "Organic cotton T-shirt</a>" in html and "2 × €24.90" in html and "€49.80" in html
    assert "tote-canvas.jpg" not in html  # no image: no broken picture


# -- money, dates, percentages ------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "amount", "currency", "expected"),
    [
        ("en", "1234.50", "EUR", "€1,234.50"),
        ("fr", "1234.50", "EUR", "1\u202f234,50\xa0€"),
        ("ja", "2490", "JPY", "￥2,490"),
        ("en", "2490", "JPY", "¥2,490"),
        ("ja", "1234.50", "EUR", "€1,234.50"),
        ("uk", "1234.50", "UAH", "1\xa0234,50\xa0₴"),
        ("fr-CA", "1234.50", "CAD", "1\xa0234,50\xa0$"),
    ],
)
def test_money_is_formatted_the_locales_way(
    locale: str, amount: str, currency: str, expected: str
) -> None:
    template = RENDERER.env.from_string("{{ amount|money(currency) }}")
    assert template.render(amount=Decimal(amount), currency=currency, locale=locale) == expected


@pytest.mark.parametrize(
    ("locale", "percent", "deadline"),
    [
        ("en", "15%", "Jan 2, 2030, 6:00\u202fPM"),
        ("fr", "15\xa0%", "2 janv. 2030, 18:00"),
        ("ja", "15%", "2030/01/02 18:00"),
        ("uk", "15%", "2 січ. 2030\u202fр., 18:00"),
    ],
)
def test_percentages_and_dates_are_the_locales_own(
    locale: str, percent: str, deadline: str
) -> None:
    template = RENDERER.env.from_string("{{ 15|percent }} | {{ moment|when(zone) }}")
    moment = datetime(2030, 1, 2, 17, 0, tzinfo=UTC)
    rendered = template.render(moment=moment, zone="Europe/Paris", locale=locale)
    assert rendered == f"{percent} | {deadline}"


def test_coupon_deadline_is_in_the_customers_timezone() -> None:
    ctx = context("incentive", locale="ja", coupon=10)
    ctx["customer"]["timezone"] = "Asia/Tokyo"
    rendered = RENDERER.render("abandoned_cart/incentive", ctx, locale="ja")
    # 18:00 UTC is 03:00 the next morning in Tokyo.
    assert rendered.subject == "【2030/01/03 3:00まで】カートの商品が10%オフ"


# -- locale choice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "shop", "lang", "html_lang"),
    [
        ("fr", "en", "fr", "fr"),
        ("fr-CA", "en", "fr", "fr-CA"),
        ("ja_JP", "en", "ja", "ja-JP"),
        ("uk-UA", "en", "uk", "uk-UA"),
        ("de-DE", "en", "en", "en"),
        ("de-DE", "fr", "fr", "fr"),
        (None, "uk", "uk", "uk"),
        ("", "ja", "ja", "ja"),
        ("xx-invalid", "de", "en", "en"),
    ],
)
def test_customer_locale_falls_back_to_language_then_shop_then_english(
    wanted: str | None, shop: str, lang: str, html_lang: str
) -> None:
    renderer = Renderer(shop_locale=shop)
    rendered = renderer.render("abandoned_cart/reminder", context(), locale=wanted)
    assert rendered.locale == lang
    assert f'<html lang="{html_lang}"' in rendered.html


def test_names_read_naturally_in_each_language() -> None:
    subjects = {
        locale: RENDERER.render(
            "abandoned_cart/reminder",
            context(customer={"first_name": "Ana"}),
            locale=locale,
        ).subject
        for locale in LOCALES
    }
    assert subjects == {
        "en": "Ana, you left something in your cart",
        "fr": "Ana, vous avez oublié quelque chose dans votre panier",
        "ja": "Ana様、カートに商品が残っています",
        "uk": "Ana, у вашому кошику дещо залишилося",
    }
    nameless = RENDERER.render(
        "abandoned_cart/reminder", context(customer={"first_name": None}), locale="ja"
    )
    assert nameless.subject == "カートに商品が残っています"


@pytest.mark.parametrize(
    ("items", "expected"),
    [(1, "1 товар чекає"), (3, "3 товари чекають"), (5, "5 товарів чекають")],
)
def test_ukrainian_counts_use_its_three_plural_forms(items: int, expected: str) -> None:
    ctx = context(locale="uk")
    ctx["cart"]["lines"] = [{**ctx["cart"]["lines"][1], "quantity": items}]
    rendered = RENDERER.render("abandoned_cart/reminder", ctx, locale="uk")
    assert rendered.preheader.startswith(expected)


# -- safety --------------------------------------------------------------------------------

INJECTIONS = [
    "Eve\r\nBcc: all@example.com",
    "Eve\nSubject: hacked",
    "Eve\rX-Spam: no",
    "Eve\x00\x1b[31m\x7f",
    "Eve\u2028Bcc: all@example.com",
    "Eve\x85Bcc: all@example.com",
]


@pytest.mark.parametrize("name", INJECTIONS)
@pytest.mark.parametrize("locale", LOCALES)
def test_customer_names_cannot_inject_headers(name: str, locale: str) -> None:
    rendered = RENDERER.render(
        "abandoned_cart/reminder", context(customer={"first_name": name}), locale=locale
    )
    for header in (rendered.subject, rendered.preheader):
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", header)
    assert rendered.subject.startswith("Eve ")


def test_product_titles_cannot_inject_headers(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    # A step whose subject names the first product, as product-led subjects do.
    edit(
        directory / "abandoned_cart" / "reminder.jinja",
        '{{ _("You left something in your cart") }}',
        '{{ _("%(product)s is still in your cart", product=cart.lines[0].name) }}',
    )
    ctx = context(customer={"first_name": None})
    ctx["cart"]["lines"][0]["name"] = "Tee\r\nBcc: everyone@example.com\r\n\r\n<script>"
    rendered = Renderer(shop_locale="en", directory=directory).render(
        "abandoned_cart/reminder", ctx, locale="en"
    )
    assert rendered.subject == "Tee Bcc: everyone@example.com <script> is still in your cart"
    assert "script" not in _elements(rendered.html).tags


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_html_is_escaped_but_the_text_part_is_verbatim() -> None:
    ctx = context(customer={"first_name": "<b>Eve</b> & Co"})
    ctx["cart"]["lines"][0]["name"] = '<img src=x onerror="alert(1)">'
    ctx["recommendations"] = []  # their pictures would count below
    rendered = RENDERER.render("abandoned_cart/reminder", ctx, locale="en")
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; Co" in rendered.html
    elements = _elements(rendered.html)
    assert "b" not in elements.tags and "onerror" not in elements.attributes
    assert elements.tags.count("img") == 2  # the two product pictures, not the name
    assert "<b>Eve</b> & Co" in rendered.text and rendered.subject.startswith("<b>Eve</b> & Co,")


# -- links ---------------------------------------------------------------------------------


def _hrefs(html: str) -> list[str]:
    return [href.replace("&amp;", "&") for href in re.findall(r'href="([^"]*)"', html)]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("journey", "step", "template", "coupon"), STEPS)
def test_every_link_is_absolute_and_tagged_with_the_journey_and_step(
    journey: str, step: str, template: str, coupon: int | None, locale: str
) -> None:
    ctx = sample_context(JOURNEYS, journey=journey, step=step, coupon_percent=coupon, locale=locale)
    rendered = RENDERER.render(template, ctx, locale=locale)
    links = _hrefs(rendered.html) + re.findall(r"https?://\S+", rendered.text)
    web = [link for link in links if not link.startswith("mailto:")]
    assert len(web) > 5 and all(link.startswith("https://") for link in web)
    unsubscribe = [link for link in web if link == "https://shop.example/account/emails"]
    assert len(unsubscribe) == 2  # HTML footer and text footer
    for link in set(web) - set(unsubscribe):
        query = parse_qs(urlsplit(link).query)
        assert query == {
            "utm_source": ["triggermail"],
            "utm_medium": ["email"],
            "utm_campaign": [journey],
            "utm_content": [step],
        }, link
    assert link_problems(rendered, ctx) == []


def test_relative_and_pre_tagged_product_links_are_fixed() -> None:
    ctx = context()
    ctx["cart"]["lines"][0]["url"] = "/p/tee?colour=blue&utm_source=feed"
    ctx["cart"]["lines"][0]["image_url"] = "/i/tee.jpg"
    rendered = RENDERER.render("abandoned_cart/reminder", ctx, locale="en")
    expected = (
        "https://shop.example/p/tee?colour=blue&utm_source=triggermail&utm_medium=email"
        "&utm_campaign=abandoned_cart&utm_content=reminder"
    )
    assert expected in _hrefs(rendered.html) and expected in rendered.text
    assert 'src="https://shop.example/i/tee.jpg"' in rendered.html


def test_a_link_without_utm_stops_the_worker(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    edit(directory / "layout" / "ui.html", 'href="{{ url|utm }}"', 'href="{{ url }}"')
    with pytest.raises(TemplateError) as caught:
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)
    assert "link 'https://shop.example/cart' has no UTM tags; pass it through |utm" in str(
        caught.value
    )


# -- checked before they matter -------------------------------------------------------------


def test_a_template_typo_stops_the_worker_naming_file_locale_and_variable(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    reminder = directory / "abandoned_cart" / "reminder.jinja"
    edit(reminder, "{{ ui.cart(cart) }}", "{{ ui.cart(cart.itmes) }}")
    with pytest.raises(TemplateError) as caught:
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)
    message = str(caught.value)
    ui = directory / "layout" / "ui.txt"  # the text part renders first
    for locale in LOCALES:
        assert (
            f"[abandoned_cart] step 'reminder': {reminder}:23 (in {ui}:28) [{locale}]: "
            "'dict object' has no attribute 'itmes'"
        ) in message


def test_a_typo_in_the_layout_names_the_layout(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    layout = directory / "layout" / "email.html"
    edit(layout, "{{ shop.postal_address }}", "{{ shop.postal_adress }}")
    with pytest.raises(
        TemplateError, match=rf"{re.escape(str(layout))}:\d+\) \[fr\]: .*postal_adress"
    ):
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    incentive = directory / "abandoned_cart" / "incentive.jinja"
    edit(incentive, "{% endif %}", "{% endiff %}")
    with pytest.raises(TemplateError, match=rf"{re.escape(str(incentive))}:17"):
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)


def test_a_missing_template_stops_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "journeys.toml"
    path.write_text(
        DEFAULTS.read_text().replace(
            'template = "abandoned_cart/incentive"', 'template = "abandoned_cart/incentiv"'
        )
    )
    with pytest.raises(TemplateError) as caught:
        RENDERER.check(load_journeys(path))
    assert "step 'incentive'" in str(caught.value)
    assert f"template missing: {RENDERER.directory / 'abandoned_cart/incentiv.jinja'}" in str(
        caught.value
    )


def test_a_missing_translation_stops_the_worker_naming_file_locale_and_message(
    tmp_path: Path,
) -> None:
    directory = broken_copy(tmp_path)
    reminder = directory / "abandoned_cart" / "reminder.jinja"
    edit(reminder, '_("Return to your cart")', '_("Back to your cart")')
    with pytest.raises(TemplateError) as caught:
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)
    for locale in ("fr", "ja", "uk"):
        catalog = directory / "locales" / locale / "LC_MESSAGES" / "messages.po"
        assert f"{reminder}:24 [{locale}] 'Back to your cart': no translation in {catalog}" in str(
            caught.value
        )


def test_an_incomplete_or_wrong_translation_stops_the_worker(tmp_path: Path) -> None:
    directory = broken_copy(tmp_path)
    uk = directory / "locales" / "uk" / "LC_MESSAGES" / "messages.po"
    uk.write_text(re.sub(r'msgstr\[2\] ".*"', 'msgstr[2] ""', uk.read_text()))
    fr = directory / "locales" / "fr" / "LC_MESSAGES" / "messages.po"
    edit(fr, 'msgstr "%(name)s, vous avez oublié', 'msgstr "%(nom)s, vous avez oublié')
    ja = directory / "locales" / "ja" / "LC_MESSAGES" / "messages.po"
    edit(ja, 'msgid "Return to your cart"', '#, fuzzy\nmsgid "Return to your cart"')
    with pytest.raises(TemplateError) as caught:
        Renderer(shop_locale="en", directory=directory).check(JOURNEYS)
    message = str(caught.value)
    assert "[uk] '%(num)s item is waiting in your cart at %(shop)s" in message
    assert f"a plural form is empty in {uk}" in message
    assert f"{fr}:" in message and "[fr] '%(name)s, you left something in your cart'" in message
    assert "'nom'" in message
    assert f"[ja] 'Return to your cart': translation marked fuzzy in {ja}" in message


def test_a_shop_locale_without_translations_stops_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "journeys.toml"
    path.write_text(DEFAULTS.read_text().replace('locale = "en"', 'locale = "de"'))
    with pytest.raises(TemplateError, match=r"\[shop\] locale 'de' has no catalog"):
        Renderer(shop_locale="de").check(load_journeys(path))


async def test_worker_start_fails_on_a_broken_template(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    directory = broken_copy(tmp_path)
    edit(directory / "abandoned_cart" / "incentive.jinja", "coupon.code", "coupon.cod")
    engine = make_engine(sqlite_url)
    with ThreadPoolExecutor(1) as executor, pytest.raises(TemplateError) as caught:
        build_worker(
            env.client,
            settings=Settings(database_url=sqlite_url),
            journeys=JOURNEYS,
            session_factory=make_session_factory(engine),
            transport=OutboxTransport(tmp_path / "outbox"),
            executor=executor,
            renderer=Renderer(shop_locale="en", directory=directory),
        )
    engine.dispose()
    assert "step 'incentive'" in str(caught.value) and "has no attribute 'cod'" in str(caught.value)


def test_message_template_lists_exactly_the_templates_messages() -> None:
    with (RENDERER.directory / "locales" / "messages.pot").open("rb") as pot:
        catalog = read_po(pot)
    in_pot = {message.id if isinstance(message.id, str) else message.id[0] for message in catalog}
    in_templates = {m if isinstance(m, str) else m[0] for _, _, m, _ in RENDERER.messages()}
    assert in_pot - {""} == in_templates, (
        "refresh it: cd templates && pybabel extract -F babel.cfg --no-wrap --sort-by-file "
        "--add-comments=Translators: -o locales/messages.pot ."
    )


@pytest.mark.parametrize(
    "locale", ["en", "fr", "fr_CA", "ja", "uk", "de_CH", "hi", "ar", "nl", "fa", "my", "he"]
)
@pytest.mark.parametrize("currency", ["EUR", "JPY", "USD", "UAH", "CHF", "KWD", "INR", "CLF"])
def test_fast_money_formatting_matches_babel(locale: str, currency: str) -> None:
    amounts: list[Decimal | float | int] = [
        Decimal(amount)
        for amount in ["0", "0.5", "-3.25", "1234.5", "1234.565", "999999.995", "100000000.01"]
    ]
    for amount in [*amounts, Decimal("-0.001"), 3, -7, 12.345, 0.1 + 0.2]:
        assert _format_money(amount, currency, locale) == format_currency(
            amount, currency, locale=locale
        )


def _with_variant(tmp_path: Path, variant: str) -> Path:
    path = tmp_path / "journeys.toml"
    path.write_text(
        DEFAULTS.read_text().replace(
            'template = "abandoned_cart/reminder"\n',
            'template = "abandoned_cart/reminder"\n\n'
            f"[[abandoned_cart.steps.variants]]\n{variant}\n",
            1,
        )
    )
    return path


def test_every_variant_is_rendered_at_worker_start(tmp_path: Path) -> None:
    path = _with_variant(
        tmp_path,
        'name = "short"\ntemplate = "abandoned_cart/incentive"\ncoupon_percent = 5\n'
        'coupon_valid = "1d"\nsubject = { en = "{{ customer.first_name }}?", fr = "Alors ?" }',
    )
    assert RENDERER.check(load_journeys(path)) == (len(STEPS) + 1) * len(LOCALES)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            'name = "b"\nsubject = "Hi {{ customer.nickname }}"',
            "variant 'b': the variant's subject line [en]: 'dict object' has no attribute",
        ),
        ('name = "b"\nsubject = "Hi {{ customer."', "variant 'b': the variant's subject line"),
        ('name = "b"\ntemplate = "abandoned_cart/nope"', "template missing"),
    ],
)
def test_a_broken_variant_stops_the_worker(tmp_path: Path, variant: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        RENDERER.check(load_journeys(_with_variant(tmp_path, variant)))
    assert "[abandoned_cart] step 'reminder' variant 'b'" in str(caught.value)
    assert message in str(caught.value)


def test_a_variant_subject_is_plain_text_in_the_customer_locale() -> None:
    context = sample_context(JOURNEYS, journey="abandoned_cart", step="reminder", locale="fr")
    subject = {
        "en": "Tom & {{ customer.first_name }}",
        "fr": "Toujours là, {{ customer.first_name }} ?",
    }
    french = RENDERER.render("abandoned_cart/reminder", context, locale="fr-CA", subject=subject)
    english = RENDERER.render("abandoned_cart/reminder", context, locale="de", subject=subject)
    assert french.subject.startswith("Toujours là, ")
    assert english.subject.startswith("Tom & ")  # a header: never HTML-escaped
    assert "<title>Tom &amp; " in english.html
