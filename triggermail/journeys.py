"""The journeys TOML: timings, templates and offers, validated once at process start.

A running journey never reads this file: its entry snapshots the journey's spec
into the workflow input, so a deploy never changes a journey under a customer.

Here are the shop-wide tables (``[shop]``, ``[guardrails]``, ``[segments]``, ``[sweep]``,
``[attribution]``), the whole file's model, :class:`JourneysConfig`, and its loading;
each journey's own table, its steps and their variants, is in
:mod:`triggermail.journey_tables`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from triggermail.journey_tables import (
    Birthday,
    BrowseAbandonment,
    Duration,
    Journey,
    LapsedJourney,
    Reactivation,
    Replenishment,
    ReviewRequest,
    Step,
    StrictTable,
    WinBack,
    local_time,
)
from triggermail.specs import JourneySpec, StepSpec
from triggermail.variants import HOLDOUT, assign_variant, in_holdout


class JourneysConfigError(Exception):
    """The journeys TOML is wrong; the message names the file, section and field."""


SEGMENTS = ("vip", "repeat", "one_time")
"""Customer segments, richest first: the top spenders, repeat buyers, one-time buyers."""


class Segments(StrictTable):
    """How customers are segmented when a lapsed-customer journey starts."""

    vip_percent: float = Field(default=2.0, gt=0, le=50)
    """VIPs are this top share of customers by total spent…"""
    vip_min_orders: int = Field(default=3, ge=1)
    """…who also ordered at least this often."""


class Sweep(StrictTable):
    """The daily sweep that starts the journeys of time passing (a Temporal Schedule)."""

    at: Annotated[time, BeforeValidator(local_time)] = time(2)
    """UTC time of day the Schedule runs it; it covers the days since the last sweep."""
    page_size: int = Field(default=500, ge=10, le=10_000)
    """Customers read and started per activity call."""


def _absolute_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{value!r} is not an absolute URL; write e.g. 'https://shop.example'")
    # Templates join paths onto it ("{url}/cart"): a trailing slash would double up.
    return value.rstrip("/")


AbsoluteUrl = Annotated[str, AfterValidator(_absolute_url)]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA timezone; write e.g. 'Europe/Paris'") from None
    return value


Timezone = Annotated[str, AfterValidator(_timezone)]
Colour = Annotated[str, Field(pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")]
UtmValue = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~-]+$")]


class Branding(StrictTable):
    """How the shop's e-mails look: colours as ``#rrggbb``; the shop's name when no logo."""

    logo_url: AbsoluteUrl | None = None
    logo_width: int = Field(default=140, ge=16, le=600)
    """Pixels; the height follows the image's own proportions."""
    primary_colour: Colour = "#18181b"
    """Buttons and links."""
    button_text_colour: Colour = "#ffffff"
    text_colour: Colour = "#18181b"
    background_colour: Colour = "#f4f4f5"


class Utm(StrictTable):
    """UTM parameters on every link into the shop; the campaign is the journey, the content
    the step."""

    source: UtmValue = "triggermail"
    medium: UtmValue = "email"


class Shop(StrictTable):
    name: str
    url: AbsoluteUrl
    from_email: str
    from_name: str | None = None
    help_email: str
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    locale: str = "en"
    postal_address: str = Field(min_length=1, pattern=r"^[^\r\n]+$")
    """One line; the law in most countries wants it in every marketing e-mail."""
    preferences_url: AbsoluteUrl
    """The shop's page where a customer chooses which e-mails to get."""
    timezone: Timezone = "UTC"
    """Where quiet hours are counted for a customer whose own timezone is unknown."""
    branding: Branding = Branding()
    utm: Utm = Utm()


_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the customer's local time, in which no marketing e-mail goes out."""

    start: time
    end: time
    """May be earlier than ``start``: the window then spans midnight (``21:00-09:00``)."""


def _quiet_hours(value: Any) -> QuietHours | None:
    if isinstance(value, QuietHours) or value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("write quiet hours as a string, e.g. '21:00-09:00', or '' for none")
    if value.strip() == "":
        return None
    match = _QUIET_HOURS.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a daily window; write e.g. '21:00-09:00', or ''")
    sh, sm, eh, em = (int(part) for part in match.groups())
    if (sh, sm) == (eh, em):
        raise ValueError(f"{value!r} starts and ends at the same time; write '' for none")
    return QuietHours(time(sh, sm), time(eh, em))


def _known_journey(name: str) -> str:
    # JourneysConfig is defined below; by the time a file is validated it is there.
    known = JourneysConfig.journey_names()
    if name not in known:
        raise ValueError(f"{name!r} is not a journey; known: {', '.join(sorted(known))}")
    return name


JourneyName = Annotated[str, AfterValidator(_known_journey)]


class Guardrails(StrictTable):
    """What protects a customer's inbox across every journey, applied at send time.

    Each guard is off at ``0`` (or ``""`` for quiet hours).
    """

    min_hours_between: float = Field(default=16, ge=0)
    """No marketing e-mail within this many hours of the customer's previous one."""
    max_per_week: int = Field(default=4, ge=0)
    """At most this many marketing e-mails to a customer in any 7 days."""
    quiet_hours: Annotated[QuietHours | None, BeforeValidator(_quiet_hours)] = QuietHours(
        time(21), time(9)
    )
    """``"HH:MM-HH:MM"`` in the customer's timezone (the shop's when unknown)."""
    max_deferral: Duration = timedelta(days=3)
    """An e-mail the cap or quiet hours hold back longer than this after it was due is
    skipped (recorded as ``skipped``, reason ``capped``) instead of arriving stale."""
    priority: dict[JourneyName, int] = Field(default_factory=dict)
    """Higher goes first when journeys compete for the cap; unlisted journeys have 0."""
    exempt: list[JourneyName] = Field(default_factory=list)
    """Transactional journeys: no cap, no quiet hours, not counted, no List-Unsubscribe."""

    def priority_of(self, journey: str) -> int:
        return self.priority.get(journey, 0)

    def is_exempt(self, journey: str) -> bool:
        return journey in self.exempt


class Attribution(StrictTable):
    """Which e-mail an order is credited to (``triggermail report``)."""

    click_window: Duration = timedelta(days=5)
    """An order is credited to the last e-mail the customer clicked this long before it…"""
    open_window: Duration = timedelta(days=1)
    """…failing that, to the last one opened (received, without open tracking) this long
    before it."""
    open_tracking: bool = True
    """False when SendGrid's open tracking is off: a received (delivered) e-mail counts."""


class JourneysConfig(StrictTable):
    shop: Shop
    guardrails: Guardrails = Guardrails()
    segments: Segments = Segments()
    sweep: Sweep = Sweep()
    attribution: Attribution = Attribution()
    abandoned_cart: Journey
    browse_abandonment: BrowseAbandonment | None = None
    post_purchase: Journey | None = None
    review_request: ReviewRequest | None = None
    replenishment: Replenishment | None = None
    reactivation: Reactivation | None = None
    win_back: WinBack | None = None
    birthday: Birthday | None = None
    welcome: Journey | None = None
    """Journeys other than the abandoned cart are off when their table is absent (older
    files)."""

    def spec(
        self,
        journey: str,
        *,
        customer_id: str | None = None,
        winners: Mapping[str, str] | None = None,
    ) -> JourneySpec:
        """The journey as ``customer_id`` gets it: their variant of every step, or the
        holdout (each step ``holdout``); as written (``control``) without a customer.

        Args:
            winners: decided experiments' winners by experiment name; their steps give
                every new entry the winner instead of a draw.
        """
        config: Journey = getattr(self, journey)
        if customer_id is None:
            return self._pinned(config, journey, [step.spec() for step in config.steps])
        if in_holdout(journey, customer_id, config.holdout):
            return self._pinned(config, journey, [step.spec(HOLDOUT) for step in config.steps])
        steps = []
        for step in config.steps:
            variant = "control"
            if step.variants:
                experiment = self.experiment_of(journey, step)
                winner = (winners or {}).get(experiment)
                known = {name for name, _ in step.weights()}
                variant = (
                    winner
                    if winner in known
                    else assign_variant(experiment, customer_id, step.weights())
                )
            steps.append(step.spec(variant))
        return self._pinned(config, journey, steps)

    @staticmethod
    def _pinned(config: Journey, journey: str, steps: list[StepSpec]) -> JourneySpec:
        """The spec a journey carries for life: its table's content in each step too."""
        return JourneySpec(
            name=journey,
            steps=[config.pin(step) for step in steps],
            sunset_after_s=(
                config.sunset_after.total_seconds() if isinstance(config, WinBack) else None
            ),
        )

    def offered(self, journey: str, spec: JourneySpec, segment: str | None) -> JourneySpec:
        """A lapsed journey's spec with the offers of the customer's ``segment`` (the
        sweep knows it only once it reads the customer); other journeys' as they are."""
        config = getattr(self, journey, None)
        if not isinstance(config, LapsedJourney):
            return spec
        return replace(spec, steps=[config.offered(step, segment) for step in spec.steps])

    def draws_per_customer(self, journey: str) -> bool:
        """Whether customers may enter ``journey`` differently: a holdout or A/B variants."""
        config: Journey | None = getattr(self, journey, None)
        return config is not None and (
            config.holdout > 0 or any(step.variants for step in config.steps)
        )

    @staticmethod
    def experiment_of(journey: str, step: Step) -> str:
        return step.experiment or f"{journey}.{step.name}"

    def experiments(self) -> list[tuple[str, str, Step]]:
        """Every enabled step with variants: ``(experiment, journey, step)``."""
        return [
            (self.experiment_of(name, step), name, step)
            for name, journey in self.enabled().items()
            for step in journey.steps
            if step.variants
        ]

    def subject_of(self, journey: str, step: str, variant: str) -> str | dict[str, str] | None:
        """A variant's own subject line, if it has one (and is still configured)."""
        config: Journey | None = getattr(self, journey, None)
        found = next((s for s in config.steps if s.name == step), None) if config else None
        chosen = found.variant(variant) if found else None
        return chosen.subject if chosen else None

    @model_validator(mode="after")
    def _experiments_unique(self) -> JourneysConfig:
        names = [name for name, _, _ in self.experiments()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"experiment names must be unique across journeys; twice: {twice}")
        return self

    def is_enabled(self, journey: str) -> bool:
        config: Journey | None = getattr(self, journey, None)
        return config is not None and config.enabled

    @classmethod
    def journey_names(cls) -> list[str]:
        """The journeys this config has a table for, in the order they are declared: the
        tables a :class:`Journey` (or a kind of one) reads. ``workflows.registry`` declares
        the journeys themselves; ``tests/test_registry.py`` keeps the two the same."""
        return [
            name
            for name, info in cls.model_fields.items()
            if any(
                isinstance(kind, type) and issubclass(kind, Journey)
                for kind in (info.annotation, *get_args(info.annotation))
            )
        ]

    def enabled(self) -> dict[str, Journey]:
        return {name: getattr(self, name) for name in self.journey_names() if self.is_enabled(name)}


def _default_text() -> tuple[str, str]:
    source = resources.files("triggermail").joinpath("journeys.toml")
    return str(source), source.read_text(encoding="utf-8")


def load_journeys(path: Path | None = None) -> JourneysConfig:
    """Load and validate the journeys TOML (the packaged defaults when ``path`` is None).

    Raises:
        JourneysConfigError: naming the file, section and field that is wrong.
    """
    if path is None:
        name, text = _default_text()
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise JourneysConfigError(f"{name}: cannot read journeys file: {err}") from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise JourneysConfigError(f"{name}: not valid TOML: {err}") from err
    try:
        return JourneysConfig.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = _toml_path(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}: [{where}]: {message}")
        raise JourneysConfigError("\n".join(problems)) from err


def _toml_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
