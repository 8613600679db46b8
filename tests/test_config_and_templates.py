"""Bad configuration stops a process at start, saying exactly where (templates: tests/emails)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from triggermail.durations import format_duration, parse_duration
from triggermail.journeys import JourneysConfigError, load_journeys
from triggermail.settings import Settings

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
    assert spec.steps[0].recommendations == 2 and spec.steps[1].coupon_percent == 10
    browse = journeys.browse_abandonment
    assert browse is not None
    assert (browse.window, browse.cool_down, browse.skip_if_ordered_within, browse.min_views) == (
        timedelta(hours=24),
        timedelta(days=7),
        timedelta(days=10),
        2,
    )
    viewed, offer = journeys.spec("browse_abandonment").steps
    assert (viewed.after_s, offer.after_s) == (20 * 60, 86400)
    assert (offer.coupon_percent, offer.recommendations) == (10, 3)
    welcome = journeys.spec("welcome")
    assert [(s.name, s.after_s) for s in welcome.steps] == [
        ("welcome", 0),
        ("discover", 86400),
        ("account", 2 * 86400),
    ]


def test_a_journeys_file_without_a_welcome_has_it_off(tmp_path: Path) -> None:
    text = DEFAULTS.read_text()
    path = tmp_path / "journeys.toml"
    path.write_text(text[: text.index("[welcome]")])
    journeys = load_journeys(path)
    assert journeys.welcome is None and "welcome" not in journeys.enabled()


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
        (
            'url = "https://shop.example"',
            'url = "shop.example"',
            "[shop.url]: 'shop.example' is not",
        ),
        ("preferences_url = ", "preferences_url = '/account' #", "[shop.preferences_url]"),
        ("postal_address = ", "# postal_address = ", "[shop.postal_address]: Field required"),
        (
            'primary_colour = "#18181b"',
            'primary_colour = "black"',
            "[shop.branding.primary_colour]",
        ),
        ('medium = "email"', 'medium = "e mail"', "[shop.utm.medium]: String should match"),
        ("logo_width = 140", "logo_widht = 140", "[shop.branding.logo_widht]: Extra"),
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


@pytest.mark.parametrize(
    ("step", "variant", "message"),
    [
        ("", 'name = "control"', "a variant may not be named 'control'"),
        ("", 'name = "holdout"', "a variant may not be named 'holdout'"),
        ("", 'name = "b"\ncoupon_percent = 20', "variant 'b': coupon_percent needs coupon_valid"),
        ("", 'name = "b"\nweight = 0', "[abandoned_cart.steps[0].variants[0].weight]"),
        ("", 'name = "b"\nafter = "1x"', "[abandoned_cart.steps[0].variants[0].after]"),
        ("", 'name = "b"\ncolour = "red"', "[abandoned_cart.steps[0].variants[0].colour]: Extra"),
        ("auto_winner = { min_recipients = 100 }", "", "auto_winner needs variants"),
        (
            "auto_winner = { probability = 0.4 }",
            'name = "b"',
            "[abandoned_cart.steps[0].auto_winner.probability]",
        ),
        ("", 'name = "b"\n[[abandoned_cart.steps.variants]]\nname = "b"', "variant names must"),
    ],
)
def test_bad_variants_name_the_step_and_the_field(
    tmp_path: Path, step: str, variant: str, message: str
) -> None:
    text = f'template = "abandoned_cart/reminder"\n{step}\n'
    if variant:
        text += f"\n[[abandoned_cart.steps.variants]]\n{variant}\n"
    path = _write(tmp_path, 'template = "abandoned_cart/reminder"\n', text)
    with pytest.raises(JourneysConfigError) as caught:
        load_journeys(path)
    assert message in str(caught.value)


def test_a_holdout_above_half_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "[abandoned_cart]\nenabled = true", "[abandoned_cart]\nholdout = 0.7")
    with pytest.raises(JourneysConfigError, match=r"\[abandoned_cart.holdout\]"):
        load_journeys(path)


def test_an_offer_variant_where_segments_set_the_offer_is_refused(tmp_path: Path) -> None:
    text = DEFAULTS.read_text()
    start = text.index("[[win_back.steps]]")
    end = text.index("\n\n", text.index("phase = ", start))
    path = tmp_path / "journeys.toml"
    path.write_text(
        text[:end]
        + '\n[[win_back.steps.variants]]\nname = "deeper"\nfree_shipping = false\n'
        + text[end:]
    )
    with pytest.raises(JourneysConfigError, match="changes the offer, but the segments"):
        load_journeys(path)


def test_every_customer_is_assigned_one_variant_by_weight_and_always_the_same() -> None:
    from triggermail.variants import assign_variant, in_holdout

    weights = [("control", 3.0), ("b", 1.0)]
    drawn = [assign_variant("x.reminder", f"c-{i}", weights) for i in range(20_000)]
    assert drawn.count("b") / len(drawn) == pytest.approx(0.25, abs=0.015)
    assert drawn == [assign_variant("x.reminder", f"c-{i}", weights) for i in range(20_000)]
    # Another experiment draws independently of this one.
    other = [assign_variant("y.reminder", f"c-{i}", weights) for i in range(20_000)]
    both = sum(a == b == "b" for a, b in zip(drawn, other, strict=True)) / len(drawn)
    assert both == pytest.approx(0.25 * 0.25, abs=0.01)
    held = sum(in_holdout("abandoned_cart", f"c-{i}", 0.1) for i in range(20_000))
    assert held / 20_000 == pytest.approx(0.1, abs=0.01)
    assert not any(in_holdout("abandoned_cart", f"c-{i}", 0) for i in range(1000))


def test_the_workers_metrics_listen_on_loopback_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRIGGERMAIL_METRICS_ADDRESS", raising=False)
    assert Settings().metrics_address == "127.0.0.1:9464"
