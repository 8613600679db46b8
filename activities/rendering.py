"""E-mail rendering: one Jinja2 environment, gettext catalogs, HTML with CSS inlined, plain text.

Each step has one template, ``templates/<journey>/<step>.jinja``, holding its subject,
preheader and content. It is compiled twice: as HTML (autoescaped) on
``layout/email.html`` with the components in ``layout/ui.html``, and as plain text
on ``layout/email.txt`` with ``layout/ui.txt``. So both parts say the same thing
from the same source; the text part is never HTML with its tags stripped.

Copy is written in English inside ``_()`` calls; ``templates/locales/<locale>/
LC_MESSAGES/messages.po`` translates it. A customer's locale (``fr-CA``) falls back
to its language (``fr``), then to the shop's locale, then to English. Every enabled
step is rendered in every locale against sample data when the worker starts, and
every message is looked up in every catalog, so a broken template or a missing
translation stops a deploy instead of a customer's journey.
"""

from __future__ import annotations

import copy
import functools
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.numbers import (
    format_percent,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
)
from babel.support import NullTranslations, Translations
from markupsafe import Markup

from triggermail.journeys import JourneysConfig
from workflows import registry

SOURCE_LOCALE = "en"
"""The language the templates are written in; it needs no catalog."""
HTML_LAYOUT, TEXT_LAYOUT = "layout/email.html", "layout/email.txt"
HTML_UI, TEXT_UI = "layout/ui.html", "layout/ui.txt"
STYLESHEET = "layout/email.css"
COMPONENT_VARS = (
    "shop",
    "lang",
    "locale",
    "utm_query",
    "gettext",
    "_",
    "ngettext",
    "pgettext",
    "npgettext",
)
"""What layout/ui.* may read besides their arguments: the same for every customer."""
CATALOG = "LC_MESSAGES/messages.po"

# Line breaks of every kind and other control characters: none may reach a header. Runs
# of them and of spaces become one space; no-break spaces (1 234,50 €) stay.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_HREF = re.compile(r"""href="([^"]*)\"""")
_SRC = re.compile(r"""src="([^"]*)\"""")
_TEXT_LINK = re.compile(r"https?://\S+")


class TemplateError(Exception):
    """A template or translation that cannot render; names file, locale and problem."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    locale: str
    """The catalog the copy came from (``en``, ``fr``, …)."""
    preheader: str = ""
    """The line inboxes show after the subject; hidden at the top of the HTML."""


def templates_dir() -> Path:
    return Path(str(resources.files("templates")))


class _FormatLoader(jinja2.FileSystemLoader):
    """Serves ``html:<path>`` and ``text:<path>`` from the same file.

    Jinja2 caches and autoescapes by template name, so the two names give one step
    template two compilations: escaped for HTML, verbatim for text.
    """

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        return super().get_source(environment, template.removeprefix("html:").removeprefix("text:"))


def _autoescape(name: str | None) -> bool:
    return name is not None and (name.startswith("html:") or name.endswith(".html"))


class _Environment(jinja2.Environment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        # Contexts are plain dicts: ``line.name`` would otherwise raise and catch an
        # AttributeError first, a hundred times per e-mail.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class Renderer:
    """Renders a step's e-mail in the customer's locale; built once per worker, thread-safe."""

    def __init__(self, *, shop_locale: str, directory: Path | None = None) -> None:
        self.directory = directory or templates_dir()
        self.shop_locale = shop_locale
        self.env = _Environment(
            loader=_FormatLoader(self.directory),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        # Multi-line messages read as one sentence in the catalogs.
        self.env.policies["ext.i18n.trimmed"] = True
        # English until a render hands in its locale's functions (see ``_gettext``).
        null = NullTranslations()
        self.env.install_gettext_callables(  # type: ignore[attr-defined]
            null.gettext, null.ngettext, newstyle=True
        )
        self.env.filters["money"] = _money
        self.env.filters["when"] = _when
        self.env.filters["date"] = _date
        self.env.filters["percent"] = _percent
        self.env.filters["utm"] = _utm
        self.env.filters["absolute"] = _absolute
        self._inliner = css_inline.CSSInliner(
            keep_style_tags=False,
            # Media queries cannot be inlined; they stay in <style> for clients that read it.
            keep_at_rules=True,
            load_remote_stylesheets=False,
            # Outlook's Word engine reads width attributes, not CSS.
            apply_width_attributes=True,
        )
        self._catalogs = self._load_catalogs()
        self._stylesheets: dict[str, Markup] = {}
        self._subjects: dict[str, jinja2.Template] = {}
        self._modules: dict[tuple[str, ...], jinja2.environment.TemplateModule] = {}
        # A render picks its locale's functions from the context, not from the shared
        # environment, so concurrent activities in other locales never see them.
        self._gettext = {SOURCE_LOCALE: _gettext_callables(null)}
        for locale, (_, catalog) in self._catalogs.items():
            self._gettext[locale] = _gettext_callables(_translations(catalog))

    # -- locales ---------------------------------------------------------------------------

    def locales(self) -> list[str]:
        return sorted({SOURCE_LOCALE, *self._catalogs})

    def locale_for(self, wanted: str | None) -> str:
        """The catalog for a customer: exact, then language, then the shop's, then English."""
        for candidate in [*_candidates(wanted), *_candidates(self.shop_locale)]:
            if candidate in self._gettext:
                return candidate
        return SOURCE_LOCALE

    def _load_catalogs(self) -> dict[str, tuple[Path, Catalog]]:
        catalogs = {}
        for path in sorted(self.directory.glob(f"locales/*/{CATALOG}")):
            locale = path.parent.parent.name
            try:
                with path.open("rb") as po:
                    catalogs[locale] = (path, read_po(po, locale=locale, abort_invalid=True))
            except (PoFileError, ValueError, UnknownLocaleError) as err:
                raise TemplateError(f"{path} [{locale}]: not a valid catalog: {err}") from err
        return catalogs

    # -- rendering -------------------------------------------------------------------------

    def has_template(self, template: str) -> bool:
        """Whether ``<template>.jinja`` exists (compiled once, then answered from the cache)."""
        try:
            self.env.get_template(f"text:{template}.jinja")
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(
        self,
        template: str,
        context: dict[str, Any],
        *,
        locale: str | None,
        subject: str | Mapping[str, str] | None = None,
    ) -> Rendered:
        """Render one step's e-mail: subject, preheader, HTML (CSS inlined) and text.

        Args:
            template: ``<journey>/<step>``, as in the journeys TOML.
            context: what the templates read; :func:`sample_context` shows its shape.
            locale: the customer's locale (``fr-FR``), or None for the shop's.
            subject: an A/B variant's subject line (Jinja, the template's variables), or
                one per locale; replaces the template's ``subject`` block.

        Raises:
            TemplateError: naming the file and line, the locale and the problem.
        """
        lang = self.locale_for(locale)
        shared = {
            **context,
            **self._gettext[lang],
            "lang": lang,
            "locale": _format_locale(locale, lang),
            "utm_query": _utm_query(context),
        }
        shop_key = repr(context.get("shop"))
        with self._errors(lang, f"{template}.jinja"):
            text_template = self.env.get_template(f"text:{template}.jinja")
            text_vars = self._part_vars(TEXT_LAYOUT, TEXT_UI, shared, shop_key)
            text = text_template.render(text_vars)
            blocks = text_template.new_context(text_vars)
            subject = _header_safe(
                _block(text_template, "subject", blocks)
                if subject is None
                else self._variant_subject(subject, lang, text_vars)
            )
            preheader = _header_safe(_block(text_template, "preheader", blocks))
            html_template = self.env.get_template(f"html:{template}.jinja")
            html_vars = self._part_vars(HTML_LAYOUT, HTML_UI, shared, shop_key)
            # The HTML's <title> and hidden preheader are the header's own words.
            html_vars.update(
                stylesheet=self._stylesheet(context["shop"], shop_key),
                subject=subject,
                preheader=preheader,
            )
            html = html_template.render(html_vars)
        # Trailing spaces go, except in "-- ", the separator that tells mail clients where
        # the footer starts.
        text = "\n".join(line if line == "-- " else line.rstrip() for line in text.split("\n"))
        return Rendered(
            subject=subject,
            html=self._inliner.inline(html),
            text=_BLANK_LINES.sub("\n\n", text).strip() + "\n",
            locale=lang,
            preheader=preheader,
        )

    def _variant_subject(
        self, subject: str | Mapping[str, str], lang: str, variables: dict[str, Any]
    ) -> str:
        """An A/B variant's subject line (from the journeys TOML), rendered for ``lang``."""
        try:
            return self._subject(subject, lang).render(variables)
        except (jinja2.TemplateError, TypeError, ValueError, LookupError) as err:
            message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
            raise TemplateError(f"the variant's subject line [{lang}]: {message}") from err

    def _subject(self, subject: str | Mapping[str, str], lang: str) -> jinja2.Template:
        """A variant's subject line for ``lang``, compiled once: the same for every e-mail."""
        if not isinstance(subject, str):
            subject = next(
                (
                    subject[candidate]
                    for candidate in [*_candidates(lang), *_candidates(self.shop_locale), "en"]
                    if candidate in subject
                ),
                next(iter(subject.values())),
            )
        compiled = self._subjects.get(subject)
        if compiled is None:
            # Nameless, so not autoescaped: a subject is a header, never HTML.
            compiled = self._subjects[subject] = self.env.from_string(subject)
        return compiled

    def _part_vars(
        self, layout: str, ui: str, shared: dict[str, Any], shop_key: str
    ) -> dict[str, Any]:
        return {**shared, "layout": layout, "ui": self._components(ui, shared, shop_key)}

    def _components(
        self, ui: str, shared: dict[str, Any], shop_key: str
    ) -> jinja2.environment.TemplateModule:
        """The components module, built once per shop, locale and campaign.

        It sees only ``COMPONENT_VARS``, never the customer's data: a component that
        reached for it would fail the start-up check rather than carry one customer's
        data into another's e-mail.
        """
        key = (ui, shop_key, shared["lang"], shared["locale"], shared["utm_query"])
        module = self._modules.get(key)
        if module is None:
            scope = {name: shared[name] for name in COMPONENT_VARS if name in shared}
            module = self.env.get_template(ui).make_module(scope)
            if len(self._modules) >= 1024:  # one per shop, locale and step; bounded anyway
                self._modules.clear()
            self._modules[key] = module
        return module

    def _stylesheet(self, shop: Any, key: str) -> Markup:
        """The branded stylesheet, rendered once per shop: it is the same for every e-mail."""
        if key not in self._stylesheets:
            css = self.env.get_template(STYLESHEET).render(shop=shop)
            # Colours are validated as #rrggbb in [shop.branding]; nothing to escape.
            self._stylesheets[key] = Markup(css)
        return self._stylesheets[key]

    def _errors(self, lang: str, name: str) -> _ErrorNamer:
        return _ErrorNamer(self.directory, lang, name)

    # -- the start-up check ----------------------------------------------------------------

    def check(self, journeys: JourneysConfig) -> int:
        """Render every enabled step in every locale against sample data; audit the catalogs.

        Returns the number of e-mails rendered.

        Raises:
            TemplateError: listing every template, translation and link that is wrong,
                each with its file, locale and the variable or message concerned.
        """
        problems: list[str] = []
        shop_lang = self.locale_for(journeys.shop.locale)
        if journeys.shop.locale.replace("_", "-").split("-")[0].lower() != shop_lang:
            problems.append(
                f"[shop] locale {journeys.shop.locale!r} has no catalog in "
                f"{self.directory / 'locales'}; have {', '.join(self.locales())}"
            )
        problems += self.missing_translations()
        count = 0
        for name, journey in journeys.enabled().items():
            for step in journey.steps:
                for variant in ["control", *(v.name for v in step.variants)]:
                    spec = step.spec(variant)
                    subject = journeys.subject_of(name, step.name, variant)
                    where = f"[{name}] step {step.name!r}" + (
                        f" variant {variant!r}" if variant != "control" else ""
                    )
                    for locale in self.locales():
                        context = sample_context(
                            journeys,
                            journey=name,
                            step=step.name,
                            coupon_percent=spec.coupon_percent,
                            locale=locale,
                        )
                        try:
                            rendered = self.render(
                                spec.template, context, locale=locale, subject=subject
                            )
                        except TemplateError as err:
                            problems.append(f"{where}: {err}")
                            continue
                        file = f"{self.directory / spec.template}.jinja [{locale}]"
                        problems += [
                            f"{where}: {file}: {problem}"
                            for problem in link_problems(rendered, context)
                        ]
                        if not rendered.subject:
                            problems.append(f"{where}: {file}: the subject is empty")
                        count += 1
        if problems:
            raise TemplateError("\n".join(problems))
        return count

    def messages(self) -> Iterator[tuple[str, int, str | tuple[str, str], str | None]]:
        """Every translatable message in the templates: file, line, message, context.

        Extracted the way ``pybabel extract -F templates/babel.cfg`` does, so the check
        and the catalogs translators work on agree.
        """
        mapping = self.directory / "babel.cfg"
        with mapping.open(encoding="utf-8") as cfg:
            method_map, options_map = parse_mapping_cfg(cfg, str(mapping))
        for filename, lineno, message, _comments, context in extract_from_dir(
            self.directory, method_map, options_map
        ):
            path = str(self.directory / filename)
            if isinstance(message, tuple):
                yield path, lineno, (str(message[0]), str(message[1])), context
            else:
                yield path, lineno, message, context

    def missing_translations(self) -> list[str]:
        """Each message a catalog lacks, leaves empty, marks fuzzy or formats wrongly."""
        problems = []
        try:
            messages = list(self.messages())
        except jinja2.TemplateSyntaxError as err:
            return [f"{err.filename}:{err.lineno}: {err.message}"]
        for locale, (path, catalog) in self._catalogs.items():
            for file, line, message, context in messages:
                msgid = message[0] if isinstance(message, tuple) else message
                entry = catalog.get(msgid, context=context)
                where = f"{file}:{line} [{locale}] {msgid!r}"
                if entry is None:
                    problems.append(f"{where}: no translation in {path}")
                elif entry.fuzzy:
                    problems.append(f"{where}: translation marked fuzzy in {path}")
                elif isinstance(entry.string, tuple):
                    if not all(entry.string):
                        problems.append(f"{where}: a plural form is empty in {path}")
                elif not entry.string:
                    problems.append(f"{where}: empty translation in {path}")
            for entry, errors in catalog.check():
                for error in errors:
                    problems.append(f"{path}:{entry.lineno} [{locale}] {entry.id!r}: {error}")
        return problems


class _ErrorNamer:
    """Turns whatever a render raises into a TemplateError naming file, line and locale."""

    def __init__(self, directory: Path, lang: str, name: str) -> None:
        self.directory, self.lang, self.name = directory, lang, name

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if err is None:
            return
        where = _template_frame(tb, self.directory) or str(self.directory / self.name)
        if isinstance(err, jinja2.TemplateSyntaxError):
            where = f"{err.filename or self.directory / self.name}:{err.lineno}"
            raise TemplateError(f"{where} [{self.lang}]: {err.message}") from err
        if isinstance(err, jinja2.TemplateNotFound):
            raise TemplateError(
                f"{where} [{self.lang}]: template missing: {self.directory / str(err.name)}"
            ) from err
        if isinstance(err, jinja2.UndefinedError):
            raise TemplateError(f"{where} [{self.lang}]: {err.message}") from err
        if isinstance(err, jinja2.TemplateError | TypeError | ValueError | KeyError | LookupError):
            raise TemplateError(f"{where} [{self.lang}]: {type(err).__name__}: {err}") from err


def _template_frame(tb: TracebackType | None, directory: Path) -> str | None:
    """``file:line`` of each template on the way to the error, the step's first.

    Jinja2 rewrites traceback frames to point at template lines. A typo in a step can
    surface inside a component it hands the value to, so both are named; the layout
    that merely places the step's blocks is named only when the error is its own.
    """
    frames: list[tuple[str, int]] = []
    root, layouts = str(directory), {str(directory / HTML_LAYOUT), str(directory / TEXT_LAYOUT)}
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(root):
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    chain = [
        f"{file}:{line}"
        for i, (file, line) in enumerate(frames)
        # A file's deepest line says most ("extends" is a step's first).
        if i == len(frames) - 1
        or (file not in layouts and all(later != file for later, _ in frames[i + 1 :]))
    ]
    if not chain:
        return None
    return chain[0] if len(chain) == 1 else f"{chain[0]} (in {', '.join(chain[1:])})"


def _block(template: jinja2.Template, name: str, context: jinja2.runtime.Context) -> str:
    if name not in template.blocks:
        raise jinja2.TemplateRuntimeError(f"{template.filename} has no {{% block {name} %}}")
    return "".join(template.blocks[name](context))


def _header_safe(value: str) -> str:
    """One line, no control characters: customer or product data cannot add a header."""
    return _CONTROL.sub(" ", value).strip(" ")


# -- gettext -------------------------------------------------------------------------------


def _translations(catalog: Catalog) -> Translations:
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled)


def _gettext_callables(translations: NullTranslations) -> dict[str, Any]:
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


def _candidates(wanted: str | None) -> list[str]:
    if not wanted:
        return []
    tag = wanted.replace("_", "-")
    return [tag, tag.split("-")[0].lower()]


def _format_locale(wanted: str | None, lang: str) -> str:
    """Numbers and dates follow the customer's own region (fr-CA) when its language is used."""
    if wanted and _candidates(wanted)[1] == lang and _babel_locale(wanted).language == lang:
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


def _utm_query(context: dict[str, Any]) -> str:
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


def link_problems(rendered: Rendered, context: dict[str, Any]) -> list[str]:
    """Links a mail client could not follow, or that would not be attributed to the e-mail.

    Every link must be absolute; every web link except the unsubscribe page must carry
    the e-mail's UTM campaign and content.
    """
    campaign = context["campaign"]
    tags = (f"utm_campaign={campaign['journey']}", f"utm_content={campaign['step']}")
    exempt = {context["links"]["unsubscribe"]}
    problems = [
        f"image {src!r} is not absolute; pass it through |absolute"
        for src in _SRC.findall(rendered.html)
        if not src.startswith(("https://", "http://"))
    ]
    html_links = [link.replace("&amp;", "&") for link in _HREF.findall(rendered.html)]
    for link in [*html_links, *_TEXT_LINK.findall(rendered.text)]:
        if link.startswith(("mailto:", "tel:")) or link in exempt:
            continue
        if not link.startswith(("https://", "http://")):
            problems.append(f"link {link!r} is not absolute; pass it through |utm")
        elif not all(tag in link for tag in tags):
            problems.append(f"link {link!r} has no UTM tags; pass it through |utm")
    return sorted(set(problems))


# -- sample data ---------------------------------------------------------------------------

SAMPLE_PRODUCTS = [
    ("Organic cotton T-shirt", "24.90", 2, "tee-organic"),
    ("Canvas tote", "15.00", 1, "tote-canvas"),
    ("Merino wool beanie", "32.00", 1, "beanie-merino"),
    ("Linen shirt", "59.00", 1, "shirt-linen"),
    ("Recycled wool socks, 2 pairs", "1234.50", 1, "socks-wool"),
]
"""Deliberately varied: a quantity above one, a product without an image (the tote), a
price with a thousands separator."""

CART_JOURNEYS = registry.about("cart")
"""Journeys whose e-mails show the customer's cart."""

VIEW_JOURNEYS = registry.about("views")
"""Journeys whose ``products`` are the ones the customer viewed, most recent first."""

ORDER_JOURNEYS = registry.about("order")
"""Journeys about one order: they read ``order``, and ``products`` come from it."""

SAMPLE_CATALOG: dict[str, tuple[str, str | None, str | None, str | None, bool]] = {
    # id: name, price, brand, category, has an image
    "tee-organic": ("Organic cotton T-shirt", "24.90", "Field & Loom", "T-shirts", True),
    "beanie-merino": ("Merino wool beanie", "32.00", "Nordwool", "Hats", True),
    "tote-canvas": ("Canvas tote", "15.00", "Field & Loom", "Bags", False),
    "shirt-linen": ("Linen shirt", "59.00", "Field & Loom", "Shirts", True),
    "gift-card": ("Gift card", None, None, "Gift cards", True),
    "parka-waxed": ("Waxed cotton parka", "1249.00", "Nordwool", "Coats", True),
    "mug-enamel": ("Enamel mug", "12.00", None, "Home", True),
}
"""Products of the new journeys' samples. Deliberately varied like ``SAMPLE_PRODUCTS``: one
without an image (the tote), one without a price (the gift card), one with a thousands
separator (the parka)."""

SAMPLE_VIEWED = ["beanie-merino", "tee-organic"]
"""What a browse abandoner looked at, most recent first."""

SAMPLE_RECOMMENDED = ["shirt-linen", "tote-canvas", "gift-card", "parka-waxed", "mug-enamel"]
"""Recommendations in the recommender's order; the products an e-mail is about are left
out, as the real recommender leaves out bought and trigger items."""

SAMPLE_ORDERS: dict[str, tuple[str, datetime, datetime | None, list[tuple[str, int]]]] = {
    # journey: order id, placed, delivered, lines (product id, quantity)
    "post_purchase": (
        "10482",
        datetime(2029, 12, 29, 11, 48, tzinfo=UTC),
        None,
        [("tee-organic", 2), ("beanie-merino", 1)],
    ),
    "review_request": (
        "10482",
        datetime(2029, 12, 24, 11, 48, tzinfo=UTC),
        datetime(2029, 12, 29, 10, 5, tzinfo=UTC),
        [("tee-organic", 2), ("beanie-merino", 1)],
    ),
    # Ordered 5.5 months before ``now``: a T-shirt's 6-month cycle minus 15 days' lead.
    "replenishment": (
        "9731",
        datetime(2029, 7, 20, 9, 30, tzinfo=UTC),
        datetime(2029, 7, 23, 14, 10, tzinfo=UTC),
        [("tee-organic", 2), ("tote-canvas", 1)],
    ),
}

SAMPLE_OCCASIONS: dict[str, dict[str, Any]] = {
    # step of the birthday journey: the occasion it greets
    "birthday": {"name": "birthday", "years": None, "day": date(2030, 1, 1)},
    "anniversary": {"name": "anniversary", "years": 3, "day": date(2030, 1, 1)},
}
"""The birthday journey's ``occasion``, on the day of the samples' ``now``."""

SAMPLE_PEOPLE = {
    "en": ("Alex", "Europe/London"),
    "fr": ("Camille", "Europe/Paris"),
    "ja": ("陽菜", "Asia/Tokyo"),
    "uk": ("Олена", "Europe/Kyiv"),
}


def sample_context(
    journeys: JourneysConfig,
    *,
    journey: str = "abandoned_cart",
    step: str = "reminder",
    coupon_percent: int | None = None,
    locale: str | None = None,
    products: int = 3,
) -> dict[str, Any]:
    """The data every template is checked against: the same shape as a real send's.

    Fixed dates and coupon, so previews and snapshots only change when templates do.
    Like a real send, every context has every key: ``cart`` only for a cart's journey,
    ``order`` only for an order's, ``products`` (viewed, ordered, to review, to reorder)
    and ``recommendations`` (as many as the step's ``recommendations``) empty elsewhere,
    ``review_bonus`` only for review requests.
    """
    shop = journeys.shop
    first_name, timezone = SAMPLE_PEOPLE.get(locale or "", SAMPLE_PEOPLE["en"])
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    for position, (name, price, quantity, slug) in enumerate(SAMPLE_PRODUCTS[:products]):
        total += Decimal(price) * quantity
        lines.append(
            {
                "name": name,
                "quantity": quantity,
                "price": Decimal(price),
                "line_total": Decimal(price) * quantity,
                "url": f"{shop.url}/products/{slug}",
                "image_url": None if position == 1 else f"{shop.url}/images/{slug}.jpg",
            }
        )
    order = _sample_order(shop.url, shop.currency, journey)
    if journey in VIEW_JOURNEYS:
        about = list(SAMPLE_VIEWED)
    elif order is None:
        about = []
    elif journey == "replenishment":
        about = [order["lines"][0]["product_id"]]  # the product that runs out
    else:
        about = [line["product_id"] for line in order["lines"]]
    in_cart = [slug for *_, slug in SAMPLE_PRODUCTS[:products]] if journey in CART_JOURNEYS else []
    shown = {*about, *in_cart}
    recommended = [slug for slug in SAMPLE_RECOMMENDED if slug not in shown]
    review_request = journeys.review_request
    return {
        "shop": shop.model_dump(),
        "campaign": {"journey": journey, "step": step},
        "links": {"unsubscribe": shop.preferences_url},
        "customer": {"id": "sample", "first_name": first_name, "timezone": timezone},
        # As in a real send: only a cart's journey has one, so a template of another
        # journey that reads it fails the start-up check.
        "cart": (
            {
                "id": "sample-cart",
                "lines": lines,
                "total": total,
                "currency": shop.currency,
                "url": f"{shop.url}/cart",
            }
            if journey in CART_JOURNEYS
            else None
        ),
        "coupon": (
            {
                "code": "SAMPLE-7KQ2XW",
                "percent": coupon_percent,
                "expires_at": datetime(2030, 1, 2, 18, 0, tzinfo=UTC),
            }
            if coupon_percent
            else None
        ),
        "products": [_sample_product(shop.url, shop.currency, slug) for slug in about],
        # As many as the step asks for, as the real send does: none for most steps.
        "recommendations": [
            _sample_product(shop.url, shop.currency, slug)
            for slug in recommended[: _recommendations(journeys, journey, step)]
        ],
        "order": order,
        "review_bonus": (
            review_request.bonus
            if journey == "review_request" and review_request is not None
            else None
        ),
        # Only the birthday journey's e-mails greet an occasion.
        "occasion": SAMPLE_OCCASIONS.get(step) if journey == "birthday" else None,
        "lapsed": _sample_lapsed(journeys, journey, step),
        "now": datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
    }


def _sample_lapsed(journeys: JourneysConfig, journey: str, step: str) -> dict[str, Any] | None:
    """A repeat buyer's ``lapsed`` key, as the send builds it; None for other journeys."""
    from activities.lapsed import LAPSED_JOURNEYS, lapsed_content
    from workflows.types import SendEmailInput

    if journey not in LAPSED_JOURNEYS or getattr(journeys, journey, None) is None:
        return None
    spec = next((s for s in journeys.spec(journey).steps if s.name == step), None)
    if spec is None:
        return None
    request = SendEmailInput(
        idempotency_key="sample",
        customer_id="sample",
        journey=journey,
        step=spec,
        workflow_id="sample",
        entered_at=datetime(2030, 1, 1, 12, 0, tzinfo=UTC),
        segment="repeat",
    )
    lapsed = lapsed_content(journeys, request)
    assert lapsed is not None
    survey = [
        {**entry, "url": f"http://localhost:8000/survey/sample/{entry['answer']}"}
        for entry in lapsed["survey"]
    ]
    return {**lapsed, "survey": survey}


def _recommendations(journeys: JourneysConfig, journey: str, step: str) -> int:
    """How many recommendations the step shows (its ``recommendations`` in the TOML)."""
    config = getattr(journeys, journey, None)
    for candidate in getattr(config, "steps", None) or []:
        if candidate.name == step:
            return int(candidate.recommendations)
    return 0


def _sample_product(shop_url: str, currency: str, product_id: str) -> dict[str, Any]:
    name, price, brand, category, has_image = SAMPLE_CATALOG[product_id]
    return {
        "id": product_id,
        "name": name,
        "price": Decimal(price) if price is not None else None,
        "currency": currency,
        "url": f"{shop_url}/products/{product_id}",
        "image_url": f"{shop_url}/images/{product_id}.jpg" if has_image else None,
        "brand": brand,
        "category": category,
        "review_url": f"{shop_url}/products/{product_id}/reviews/new",
    }


def _sample_order(shop_url: str, currency: str, journey: str) -> dict[str, Any] | None:
    if journey not in ORDER_JOURNEYS:
        return None
    order_id, placed_at, delivered_at, quantities = SAMPLE_ORDERS[journey]
    lines = []
    for product_id, quantity in quantities:
        product = _sample_product(shop_url, currency, product_id)
        lines.append(
            {
                "product_id": product_id,
                "name": product["name"],
                "quantity": quantity,
                "price": product["price"],
                "line_total": product["price"] * quantity,
                "url": product["url"],
                "image_url": product["image_url"],
            }
        )
    return {
        "id": order_id,
        "placed_at": placed_at,
        "delivered_at": delivered_at,
        "lines": lines,
        "total": sum((line["line_total"] for line in lines), Decimal(0)),
        "currency": currency,
        "url": f"{shop_url}/account/orders/{order_id}",
    }
