"""E-mail rendering: one Jinja2 environment, HTML autoescaped and CSS-inlined, plus plain text.

Templates live in ``templates/<locale>/<journey>/<step>.{subject.txt,html,txt}``; a
customer's locale falls back to its language, then to the shop's locale. Every
enabled step is rendered against sample data when the worker starts, so a broken
template stops a deploy instead of a customer's journey.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_currency, format_percent

from triggermail.journeys import JourneysConfig

PARTS = ("subject.txt", "html", "txt")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class TemplateError(Exception):
    """A template that cannot render; the message names file, locale and problem."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    locale: str


def templates_dir() -> Path:
    return Path(str(resources.files("templates")))


class Renderer:
    """Renders a step's e-mail in the customer's locale; built once per worker."""

    def __init__(self, *, shop_locale: str, directory: Path | None = None) -> None:
        self.directory = directory or templates_dir()
        self.shop_locale = shop_locale
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.env.filters["money"] = _money
        self.env.filters["when"] = _when
        self.env.filters["percent"] = _percent
        self._inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)

    def locales(self) -> list[str]:
        return sorted(p.parent.name for p in self.directory.glob("*/base.html"))

    def locale_for(self, wanted: str | None) -> str:
        """The template locale for a customer: exact, then language, then the shop's."""
        available = set(self.locales())
        for candidate in _candidates(wanted):
            if candidate in available:
                return candidate
        return self.shop_locale

    def render(self, template: str, context: dict[str, Any], *, locale: str | None) -> Rendered:
        chosen = self.locale_for(locale)
        ctx = {**context, "locale": chosen}
        out: dict[str, str] = {}
        for part in PARTS:
            name = f"{chosen}/{template}.{part}"
            try:
                out[part] = self.env.get_template(name).render(ctx)
            except jinja2.TemplateNotFound as err:
                raise TemplateError(f"{self.directory / name}: template missing ({err})") from err
            except jinja2.UndefinedError as err:
                raise TemplateError(f"{self.directory / name} [{chosen}]: {err.message}") from err
            except jinja2.TemplateSyntaxError as err:
                raise TemplateError(
                    f"{err.filename or name}:{err.lineno} [{chosen}]: {err.message}"
                ) from err
            except (TypeError, ValueError, KeyError, AttributeError) as err:
                raise TemplateError(f"{self.directory / name} [{chosen}]: {err}") from err
        subject = _CONTROL.sub(" ", out["subject.txt"]).strip()
        html = self._inliner.inline(out["html"])
        return Rendered(subject=subject, html=html, text=out["txt"].strip() + "\n", locale=chosen)

    def check(self, journeys: JourneysConfig) -> int:
        """Render every enabled step in every locale against sample data.

        Returns the number of e-mails rendered.

        Raises:
            TemplateError: for the first template that does not render, naming it.
        """
        count = 0
        for name, journey in journeys.enabled().items():
            for step in journey.steps:
                for locale in self.locales():
                    context = sample_context(journeys, coupon=step.coupon_percent is not None)
                    try:
                        self.render(step.template, context, locale=locale)
                    except TemplateError as err:
                        raise TemplateError(f"[{name}] step {step.name!r}: {err}") from err
                    count += 1
        return count


def _candidates(wanted: str | None) -> list[str]:
    if not wanted:
        return []
    tag = wanted.replace("_", "-")
    return [tag, tag.split("-")[0].lower()]


def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale.parse("en")


def _money(amount: Decimal | float | int | None, currency: str, locale: str = "en") -> str:
    if amount is None:
        return ""
    return format_currency(amount, currency, locale=_babel_locale(locale))


def _percent(value: float | int, locale: str = "en") -> str:
    return format_percent(value / 100, locale=_babel_locale(locale))


def _when(moment: datetime, timezone: str | None = None, locale: str = "en") -> str:
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    local, babel_locale = moment.astimezone(zone), _babel_locale(locale)
    # Each locale orders date and time its own way ("{1}, {0}", "{1} {0}", …).
    pattern = str(babel_locale.datetime_formats["medium"])
    day = format_date(local, "medium", locale=babel_locale)
    clock = format_time(local, "short", tzinfo=zone, locale=babel_locale)
    return pattern.replace("{1}", day).replace("{0}", clock)


def sample_context(journeys: JourneysConfig, *, coupon: bool) -> dict[str, Any]:
    """The data every template is checked against: the same shape as a real send's."""
    shop = journeys.shop
    lines = [
        {
            "name": "Organic cotton T-shirt",
            "quantity": 2,
            "price": Decimal("24.90"),
            "line_total": Decimal("49.80"),
            "url": f"{shop.url}/products/tee",
            "image_url": f"{shop.url}/images/tee.jpg",
        },
        {
            "name": "Canvas tote",
            "quantity": 1,
            "price": Decimal("15.00"),
            "line_total": Decimal("15.00"),
            "url": f"{shop.url}/products/tote",
            "image_url": None,
        },
    ]
    return {
        "shop": shop.model_dump(),
        "customer": {"id": "sample", "first_name": "Alex", "timezone": "Europe/Paris"},
        "cart": {
            "id": "sample-cart",
            "lines": lines,
            "total": Decimal("64.80"),
            "currency": shop.currency,
            "url": f"{shop.url}/cart",
        },
        "coupon": (
            {
                "code": "SAMPLE-7KQ2XW",
                "percent": 10,
                "expires_at": datetime(2030, 1, 2, 18, 0, tzinfo=UTC),
            }
            if coupon
            else None
        ),
        "now": datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
    }
