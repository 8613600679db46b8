"""What a template calls besides its data: the filters and each locale's gettext.

The filters (``money``, ``when``, ``date``, ``percent``, ``utm``, ``absolute``) write
amounts, dates and links the customer's locale's way through Babel; the gettext
functions translate the copy from a compiled catalog. They are apart from the renderer
because they are formatting, cached per value and locale, and know nothing of templates,
layouts or the start-up check.
"""

from __future__ import annotations

import copy
import functools
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.numbers import (
    format_percent,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
)
from babel.support import NullTranslations, Translations
from markupsafe import Markup

SOURCE_LOCALE = "en"
"""The language the templates are written in; it needs no catalog."""

# -- gettext -------------------------------------------------------------------------------


def compiled_translations(catalog: Catalog) -> Translations:
    """A catalog as gettext reads it, without its fuzzy entries."""
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled)


def gettext_callables(translations: NullTranslations) -> dict[str, Any]:
    """Jinja2's "newstyle" gettext for one locale: always ``%``-formatted, escaped in HTML.

    They take the evaluation context, not the context: Jinja2 copies the whole context
    for a ``pass_context`` call inside a loop, once per product line.
    """

    def finish(eval_ctx: jinja2.nodes.EvalContext, text: str, variables: dict[str, Any]) -> str:
        if not variables and "%" not in text:  # nothing to fill: skip Markup's escaping `%`
            return Markup(text) if eval_ctx.autoescape else text
        return (Markup(text) if eval_ctx.autoescape else text) % variables

    @jinja2.pass_eval_context
    def gettext(eval_ctx: jinja2.nodes.EvalContext, message: str, /, **variables: Any) -> str:
        return finish(eval_ctx, translations.gettext(message), variables)

    @jinja2.pass_eval_context
    def ngettext(
        eval_ctx: jinja2.nodes.EvalContext,
        singular: str,
        plural: str,
        num: int,
        /,
        **variables: Any,
    ) -> str:
        variables.setdefault("num", num)
        return finish(eval_ctx, translations.ngettext(singular, plural, num), variables)

    @jinja2.pass_eval_context
    def pgettext(
        eval_ctx: jinja2.nodes.EvalContext, msgctxt: str, message: str, /, **variables: Any
    ) -> str:
        variables.setdefault("context", msgctxt)
        return finish(eval_ctx, str(translations.pgettext(msgctxt, message)), variables)

    @jinja2.pass_eval_context
    def npgettext(
        eval_ctx: jinja2.nodes.EvalContext,
        msgctxt: str,
        singular: str,
        plural: str,
        num: int,
        /,
        **variables: Any,
    ) -> str:
        variables.setdefault("context", msgctxt)
        variables.setdefault("num", num)
        return finish(eval_ctx, translations.npgettext(msgctxt, singular, plural, num), variables)

    return {
        "gettext": gettext,
        # Jinja2's own ``_`` looks ``gettext`` up again on every call.
        "_": gettext,
        "ngettext": ngettext,
        "pgettext": pgettext,
        "npgettext": npgettext,
    }


# -- locales and formatting ----------------------------------------------------------------


def locale_candidates(wanted: str | None) -> list[str]:
    """The catalogs that could serve ``wanted``, best first: ``fr-CA``, then ``fr``."""
    if not wanted:
        return []
    tag = wanted.replace("_", "-")
    return [tag, tag.split("-")[0].lower()]


def format_locale(wanted: str | None, lang: str) -> str:
    """Numbers and dates follow the customer's own region (fr-CA) when its language is used."""
    if wanted and locale_candidates(wanted)[1] == lang and _babel_locale(wanted).language == lang:
        return wanted.replace("_", "-")
    return lang


@functools.lru_cache(maxsize=256)
def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale.parse(SOURCE_LOCALE)


@jinja2.pass_context
def _money(
    context: jinja2.runtime.Context,
    amount: Decimal | float | int | None,
    currency: str,
    locale: str | None = None,
) -> str:
    """``€1,234.50``, ``1 234,50 €``, ``￥2,490``: the currency's own decimals, the locale's
    way."""
    if amount is None:
        return ""
    return _format_money(amount, currency, locale or context["locale"])


@functools.lru_cache(maxsize=4096)
def _format_money(amount: Decimal | float | int, currency: str, locale: str) -> str:
    # Cached because an e-mail shows each amount twice (HTML and text) and a shop's
    # prices repeat across e-mails.
    return _currency_format(locale, currency)(amount)


_QUOTED = re.compile(r"'([^']*)'")


@functools.lru_cache(maxsize=512)
def _currency_format(locale: str, currency: str) -> Callable[[Decimal | float | int], str]:
    """The locale's way to write an amount of this currency, prepared once.

    What ``format_currency`` does on every call, done once: it also looks up the
    currency's plural name each time, which made it most of a render's cost, and the
    locale's symbols for every amount. The output is the same (tests/emails compares
    them); patterns this does not cover go through Babel's own.
    """
    babel_locale = _babel_locale(locale)
    pattern = copy.copy(babel_locale.currency_formats["standard"])
    symbol = get_currency_symbol(currency, babel_locale)

    def fill(part: str) -> str:
        part = part.replace("¤¤", currency.upper()).replace("¤", symbol)
        return _QUOTED.sub(lambda quoted: quoted.group(1) or "'", part)

    prefix = pattern.prefix = tuple(fill(part) for part in pattern.prefix)
    suffix = pattern.suffix = tuple(fill(part) for part in pattern.suffix)
    digits = get_currency_precision(currency)
    pattern.frac_prec = (digits, digits)
    group, point = get_group_symbol(babel_locale), get_decimal_symbol(babel_locale)
    if (
        pattern.scale
        or pattern.exp_prec
        or "@" in pattern.pattern
        or not pattern.number_pattern
        or "'" in "".join((*prefix, *suffix, group, point))
    ):
        return functools.partial(pattern.apply, locale=babel_locale, currency=None)
    quantum = Decimal(10) ** -digits
    first_group, next_groups = pattern.grouping
    min_digits = pattern.int_prec[0]

    def format_amount(amount: Decimal | float | int) -> str:
        # NumberPattern.apply for this pattern, without its per-call lookups.
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        negative = int(value.is_signed())
        whole, _, fraction = f"{abs(value).normalize().quantize(quantum):f}".partition(".")
        whole = whole.rjust(min_digits, "0")
        grouped, size = "", first_group
        while len(whole) > size:
            grouped = group + whole[-size:] + grouped
            whole, size = whole[:-size], next_groups
        number = whole + grouped + (point + fraction if digits else "")
        return prefix[negative] + number + suffix[negative]

    return format_amount


@jinja2.pass_context
def _percent(context: jinja2.runtime.Context, value: float | int, locale: str | None = None) -> str:
    return _format_percent(value, locale or context["locale"])


@functools.lru_cache(maxsize=256)
def _format_percent(value: float | int, locale: str) -> str:
    # Cached because a step's coupon percent is the same in every e-mail.
    return format_percent(value / 100, locale=_babel_locale(locale))


@jinja2.pass_context
def _when(
    context: jinja2.runtime.Context,
    moment: datetime,
    timezone: str | None = None,
    locale: str | None = None,
) -> str:
    """A date and time in the customer's timezone, ordered and spelled the locale's way."""
    return _format_when(moment, timezone, locale or context["locale"])


@functools.lru_cache(maxsize=1024)
def _format_when(moment: datetime, timezone: str | None, locale: str) -> str:
    # Cached because a deadline appears in the subject and the body, in HTML and text.
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


@jinja2.pass_context
def _date(
    context: jinja2.runtime.Context,
    moment: datetime,
    timezone: str | None = None,
    locale: str | None = None,
) -> str:
    """A day in the customer's timezone, the locale's way (``Jul 20, 2029``, ``20 juil. 2029``)."""
    return _format_date(moment, timezone, locale or context["locale"])


@functools.lru_cache(maxsize=1024)
def _format_date(moment: datetime, timezone: str | None, locale: str) -> str:
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return format_date(moment.astimezone(zone), "medium", locale=_babel_locale(locale))


def utm_query(context: dict[str, Any]) -> str:
    """The e-mail's UTM tags as a query string (empty when the context lacks shop or campaign)."""
    shop, campaign = context.get("shop"), context.get("campaign")
    if not isinstance(shop, dict) or not isinstance(campaign, dict):
        return ""  # the templates' own StrictUndefined names what is missing
    utm = shop["utm"]
    return _utm_encoded(utm["source"], utm["medium"], campaign["journey"], campaign["step"])


@functools.lru_cache(maxsize=1024)
def _utm_encoded(source: str, medium: str, journey: str, step: str) -> str:
    return urlencode(
        {"utm_source": source, "utm_medium": medium, "utm_campaign": journey, "utm_content": step}
    )


@jinja2.pass_context
def _utm(context: jinja2.runtime.Context, url: str) -> str:
    """The link made absolute (against the shop's URL) and tagged with this e-mail's UTM."""
    if url.startswith("https://") and "?" not in url and "#" not in url:
        # The common case, without parsing; a bare host gets its "/" before the query.
        return f"{url}{'' if url.count('/') > 2 else '/'}?{context['utm_query']}"
    if not url.startswith(("https://", "http://")):
        url = urljoin(context["shop"]["url"] + "/", url)
        if not url.startswith(("https://", "http://")):
            return url  # mailto:, tel:
    parts = urlsplit(url)
    if not parts.path:
        parts = parts._replace(path="/")
    query = parts.query
    if "utm_" in query:  # the shop's own tags would misattribute this e-mail's clicks
        query = urlencode([(k, v) for k, v in parse_qsl(query) if not k.startswith("utm_")])
    query = f"{query}&{context['utm_query']}" if query else str(context["utm_query"])
    return urlunsplit(parts._replace(query=query))


@jinja2.pass_context
def _absolute(context: jinja2.runtime.Context, url: str) -> str:
    """A shop-relative URL (``/images/tee.jpg``) made absolute; mail has no base URL."""
    if url.startswith(("https://", "http://")):
        return url
    return urljoin(context["shop"]["url"] + "/", url)


FILTERS: dict[str, Callable[..., str]] = {
    "money": _money,
    "when": _when,
    "date": _date,
    "percent": _percent,
    "utm": _utm,
    "absolute": _absolute,
}
"""The filters every template may use, by the name it uses."""
