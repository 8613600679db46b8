"""Bad configuration and broken templates stop a process at start, saying exactly where."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from activities.rendering import Renderer, TemplateError, sample_context, templates_dir
from triggermail.durations import format_duration, parse_duration
from triggermail.journeys import JourneysConfigError, load_journeys

DEFAULTS = Path(__file__).parent.parent / "triggermail" / "journeys.toml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20s", timedelta(seconds=20)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("14d", timedelta(days=14)),
        ("1d12h", timedelta(hours=36)),
        ("2w", timedelta(days=14)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "30", "m30", "30 minutes", "1.5h", "-2h"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write e\.g\."):
        parse_duration(text)


def test_packaged_defaults_match_the_product_brief() -> None:
    journeys = load_journeys()
    spec = journeys.spec("abandoned_cart")
    assert [(s.name, s.after_s) for s in spec.steps] == [("reminder", 1800), ("incentive", 86400)]
    assert spec.steps[1].coupon_percent == 10


def _write(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULTS.read_text()
    assert old in text
    path = tmp_path / "journeys.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'after = "24h"',
            'after = "24x"',
            "[abandoned_cart.steps[1].after]: '24x' is not a duration",
        ),
        (
            "coupon_percent = 10",
            "coupon_percnt = 10",
            "[abandoned_cart.steps[1].coupon_percnt]: Extra",
        ),
        ("coupon_percent = 10", "coupon_percent = 140", "[abandoned_cart.steps[1].coupon_percent]"),
        ('coupon_valid = "48h"', "", "coupon_percent needs coupon_valid"),
        ('name = "incentive"', 'name = "reminder"', "step names must be unique"),
        ('from_email = "hello@shop.example"', "", "[shop.from_email]: Field required"),
        ("enabled = true", "enabled = true\n[[", "not valid TOML"),
    ],
)
def test_bad_journeys_file_names_file_section_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _write(tmp_path, old, new)
    with pytest.raises(JourneysConfigError) as caught:
        load_journeys(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_every_enabled_step_renders_in_every_locale() -> None:
    journeys = load_journeys()
    renderer = Renderer(shop_locale="en")
    assert renderer.check(journeys) == len(journeys.abandoned_cart.steps) * len(renderer.locales())


def test_a_template_typo_stops_the_worker_naming_file_and_variable(tmp_path: Path) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(templates_dir(), broken)
    reminder = broken / "en" / "abandoned_cart" / "reminder.html"
    reminder.write_text(reminder.read_text().replace("customer.first_name", "customer.frist_name"))

    with pytest.raises(TemplateError) as caught:
        Renderer(shop_locale="en", directory=broken).check(load_journeys())
    assert "step 'reminder'" in str(caught.value)
    assert str(reminder) in str(caught.value)
    assert "frist_name" in str(caught.value)


def test_html_is_escaped_and_subjects_cannot_inject_headers() -> None:
    context = sample_context(load_journeys(), coupon=False)
    context["customer"]["first_name"] = "<b>Eve</b>\r\nBcc: all@example.com"
    rendered = Renderer(shop_locale="en").render("abandoned_cart/reminder", context, locale="en")
    assert "<b>Eve</b>" not in rendered.html and "&lt;b&gt;Eve&lt;/b&gt;" in rendered.html
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert 'style="' in rendered.html  # CSS inlined for mail clients that drop <style>
