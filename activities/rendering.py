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

The filters and gettext functions templates call are in :mod:`activities.filters`; the
sample data the check renders against is in :mod:`activities.samples`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import css_inline
import jinja2
from babel import UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import PoFileError, read_po
from babel.support import NullTranslations
from markupsafe import Markup

from activities.filters import (
    FILTERS,
    SOURCE_LOCALE,
    compiled_translations,
    format_locale,
    gettext_callables,
    locale_candidates,
    utm_query,
)
from activities.samples import sample_context
from triggermail.journeys import JourneysConfig

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
        self.env.filters.update(FILTERS)
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
        self._gettext = {SOURCE_LOCALE: gettext_callables(null)}
        for locale, (_, catalog) in self._catalogs.items():
            self._gettext[locale] = gettext_callables(compiled_translations(catalog))

    # -- locales ---------------------------------------------------------------------------

    def locales(self) -> list[str]:
        return sorted({SOURCE_LOCALE, *self._catalogs})

    def locale_for(self, wanted: str | None) -> str:
        """The catalog for a customer: exact, then language, then the shop's, then English."""
        for candidate in [*locale_candidates(wanted), *locale_candidates(self.shop_locale)]:
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
            "locale": format_locale(locale, lang),
            "utm_query": utm_query(context),
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
                    for candidate in [
                        *locale_candidates(lang),
                        *locale_candidates(self.shop_locale),
                        "en",
                    ]
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
