"""Each journey's table in the journeys TOML: its steps, their A/B variants, its own keys.

``[<journey>]`` with ``[[<journey>.steps]]`` and ``[[<journey>.steps.variants]]``: what
a step sends and when, what a variant changes, and the kinds of journey with keys of
their own (browse abandonment's window, a lapsed journey's segment offers, …). A step
gives the :class:`~triggermail.specs.StepSpec` a running journey keeps. Apart from
:mod:`triggermail.journeys`, which holds the shop-wide tables, the whole file's model
and its loading, because these describe one journey each and know nothing of the others.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from triggermail.durations import parse_duration
from triggermail.specs import StepSpec


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("write a duration as a string, e.g. '30m'")
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class StrictTable(BaseModel):
    """A TOML table: an unknown key is an error, and nothing changes it once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


VariantName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class AutoWinner(StrictTable):
    """Give new entries the winning variant once the evidence is strong enough."""

    min_recipients: int = Field(default=1000, ge=10)
    """Every variant must have been sent to at least this many customers…"""
    probability: float = Field(default=0.95, gt=0.5, lt=1)
    """…and one variant's posterior probability of converting best must reach this."""


class Variant(StrictTable):
    """An A/B variant of a step: what it changes; the rest is the step's (``control``)."""

    name: VariantName
    weight: float = Field(default=1, gt=0)
    """Its share of the step's customers, relative to the other variants' and the step's."""
    subject: str | dict[str, str] | None = None
    """A Jinja subject line replacing the template's (the same variables); a table by
    locale (``{ en = "…", fr = "…" }``) falls back as the catalogs do."""
    template: str | None = Field(default=None, min_length=1)
    after: Duration | None = None
    coupon_percent: int | None = Field(default=None, ge=1, le=100)
    coupon_valid: Duration | None = None
    free_shipping: bool | None = None
    recommendations: int | None = Field(default=None, ge=0, le=12)

    @model_validator(mode="after")
    def _not_reserved(self) -> Variant:
        if self.name in RESERVED_VARIANTS:
            raise ValueError(f"a variant may not be named {self.name!r}: the step itself is")
        return self

    def changes_offer(self) -> bool:
        return self.coupon_percent is not None or self.free_shipping is not None


RESERVED_VARIANTS = frozenset({"control", "holdout"})
"""``control``: the step as written; ``holdout``: customers who are never mailed."""


class Step(StrictTable):
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    after: Duration
    template: str = Field(min_length=1)
    coupon_percent: int | None = Field(default=None, ge=1, le=100)
    coupon_valid: Duration | None = None
    recommendations: int = Field(default=0, ge=0, le=12)
    """How many recommended products to show: same brand or category, bought together."""
    free_shipping: bool = False
    """The e-mail offers free shipping (with the coupon, when it has one)."""
    phase: Literal["offer", "value", "farewell"] | None = None
    """Win-back only: which of its three phases the step belongs to."""
    hold: bool = True
    """False for an answer to what the customer just did (the thank-you for an order):
    the frequency cap and quiet hours never hold it back. It still counts toward the cap
    of the e-mails after it, and still carries the unsubscribe."""
    variants: list[Variant] = Field(default_factory=list)
    """A/B variants; the step as written is variant ``control``."""
    weight: float = Field(default=1, gt=0)
    """With variants: the share of ``control``, relative to the variants' weights."""
    experiment: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$"
    )
    """The experiment's name (``<journey>.<step>`` by default): customers are assigned by
    it, so renaming it starts a new experiment with a fresh assignment and fresh figures."""
    auto_winner: AutoWinner | None = None
    """Once a variant is very probably best, new entries get it (recorded in the store)."""

    @model_validator(mode="after")
    def _coupon_needs_validity(self) -> Step:
        if self.coupon_percent is not None and self.coupon_valid is None:
            raise ValueError("coupon_percent needs coupon_valid (how long the code works)")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        for variant in self.variants:
            if (
                variant.coupon_percent is not None
                and (variant.coupon_valid or self.coupon_valid) is None
            ):
                raise ValueError(
                    f"variant {variant.name!r}: coupon_percent needs coupon_valid "
                    "(its own or the step's)"
                )
        if self.auto_winner is not None and not self.variants:
            raise ValueError("auto_winner needs variants to choose from")
        return self

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def weights(self) -> list[tuple[str, float]]:
        """Every variant with its weight, ``control`` first."""
        return [("control", self.weight), *((v.name, v.weight) for v in self.variants)]

    def longest_after(self) -> timedelta:
        return max([self.after, *(v.after for v in self.variants if v.after is not None)])

    def spec(self, variant: str = "control") -> StepSpec:
        """The step as a customer assigned ``variant`` gets it (``holdout``: as written)."""
        chosen = self.variant(variant)
        after = self.after
        template, coupon_percent, coupon_valid = (
            self.template,
            self.coupon_percent,
            self.coupon_valid,
        )
        recommendations, free_shipping = self.recommendations, self.free_shipping
        if chosen is not None:
            after = chosen.after if chosen.after is not None else after
            template = chosen.template or template
            if chosen.coupon_percent is not None:
                coupon_percent = chosen.coupon_percent
            coupon_valid = chosen.coupon_valid or coupon_valid
            if chosen.free_shipping is not None:
                free_shipping = chosen.free_shipping
            if chosen.recommendations is not None:
                recommendations = chosen.recommendations
        return StepSpec(
            name=self.name,
            after_s=after.total_seconds(),
            template=template,
            coupon_percent=coupon_percent,
            coupon_valid_s=coupon_valid.total_seconds() if coupon_valid else None,
            recommendations=recommendations,
            free_shipping=free_shipping,
            phase=self.phase,
            hold=self.hold,
            variant=variant if chosen is not None or variant == "holdout" else "control",
            pinned=True,
            subject=chosen.subject if chosen is not None else None,
        )


class Journey(StrictTable):
    enabled: bool = True
    steps: list[Step] = Field(min_length=1)
    holdout: float = Field(default=0, ge=0, le=0.5)
    """Share of customers who enter but are never mailed, so lift can be measured: each is
    recorded (``skipped``, reason ``holdout``) when its first e-mail would have gone."""

    def pin(self, step: StepSpec) -> StepSpec:
        """The step with what its e-mail reads of this table besides its own keys, so a
        running journey keeps what it entered with."""
        return step

    @model_validator(mode="after")
    def _unique_step_names(self) -> Journey:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        return self

    def horizon(self) -> timedelta:
        """How long after entry the journey's last e-mail is due (its slowest variants)."""
        return sum((step.longest_after() for step in self.steps), timedelta())


class BrowseAbandonment(Journey):
    """Products looked at and left: the first step counts from the last view."""

    window: Duration = timedelta(hours=24)
    """Views this long before the latest one are forgotten: the e-mail shows a visit."""
    cool_down: Duration = timedelta(days=7)
    """A customer mailed by this journey is not entered again for this long."""
    skip_if_ordered_within: Duration = timedelta(days=10)
    """Someone who ordered this recently is browsing as a customer: no journey."""
    min_views: int = Field(default=2, ge=1, le=100)
    """Beside a cart filled in this visit, a product viewed this often in the window (and
    not in the cart) still starts the journey; without a cart, one view does."""


class ReviewRequest(Journey):
    """Asks for reviews of an order's products; the first step counts from delivery."""

    expected_delivery: Duration | None = None
    """For shops that send no ``Order Delivered``: delivery is assumed this long after the
    order. Unset: only ``Order Delivered`` starts the journey."""
    bonus: str | None = Field(default=None, min_length=1, max_length=200)
    """What a review earns, in the shop's words (``"10 % off your next order"``)."""

    def pin(self, step: StepSpec) -> StepSpec:
        return replace(step, review_bonus=self.bonus)


LONGEST_CYCLE = timedelta(days=3650)
"""The longest repurchase cycle: a category's here, a product's ``repurchase_days``."""


class Replenishment(Journey):
    """A product that runs out gets a reminder before it does; steps count from
    ``cycle - lead`` after the order."""

    lead: Duration = timedelta(days=15)
    """How long before the product runs out the reminder is due."""
    match: Literal["product", "category"] = "product"
    """What a repurchase is: the same product, or any product of its category."""
    cycles: dict[str, Duration] = Field(default_factory=dict)
    """Repurchase cycle by product category, for products whose events carry no
    ``repurchase_days``."""

    @model_validator(mode="after")
    def _lead_shorter_than_cycles(self) -> Replenishment:
        for category, cycle in self.cycles.items():
            if cycle <= self.lead:
                raise ValueError(f"cycle of {category!r} ({cycle}) is not longer than lead")
            if cycle > LONGEST_CYCLE:
                # The unsubscribe looks back no further for a replenishment to end.
                raise ValueError(
                    f"cycle of {category!r} ({cycle}) is longer than {LONGEST_CYCLE.days} days"
                )
        return self

    def cycle_of(self, repurchase_days: int | None, category: str | None) -> timedelta | None:
        """The product's repurchase cycle: its own, else its category's; None for none."""
        if repurchase_days:
            return timedelta(days=repurchase_days)
        return self.cycles.get(category) if category else None


class Offer(StrictTable):
    """A segment's offer: replaces the offer of every step that makes one."""

    coupon_percent: int | None = Field(default=None, ge=1, le=100)
    free_shipping: bool | None = None


class LapsedJourney(Journey):
    """A journey the daily sweep starts for customers who stopped buying."""

    after_last_order: Duration
    """No order for this long: the customer enters."""
    segments: dict[Literal["vip", "repeat", "one_time"], Offer] = Field(default_factory=dict)
    """Each segment's offer level; a segment not listed gets the steps' own offers."""

    def offer_for(self, segment: str) -> Offer | None:
        return self.segments.get(segment)  # type: ignore[call-overload]

    @model_validator(mode="after")
    def _offers_not_tested_twice(self) -> LapsedJourney:
        # A segment's offer replaces the step's, so an offer variant would be recorded as
        # tested while every customer got the segment's offer.
        if not self.segments:
            return self
        for step in self.steps:
            if not self.makes_offer(step.spec()):
                continue
            for variant in step.variants:
                if variant.changes_offer():
                    raise ValueError(
                        f"step {step.name!r} variant {variant.name!r} changes the offer, "
                        "but the segments' offers replace it; test offers per segment "
                        "instead, or drop [segments] offers"
                    )
        return self

    def makes_offer(self, step: StepSpec) -> bool:
        """Whether a segment's offer replaces the step's."""
        return False

    def offered(self, step: StepSpec, segment: str | None) -> StepSpec:
        """The step's offer as ``segment`` gets it.

        On a step that makes an offer (a win-back's offer phase, a promo reactivation),
        the segment's ``coupon_percent`` replaces the step's code's percentage and its
        ``free_shipping`` the step's; a segment without an offer leaves the step as it is.
        """
        offer = self.offer_for(segment) if segment else None
        if offer is None or not self.makes_offer(step):
            return step
        if offer.coupon_percent is not None and step.coupon_percent is not None:
            step = replace(step, coupon_percent=offer.coupon_percent)
        if offer.free_shipping is not None:
            step = replace(step, free_shipping=offer.free_shipping)
        return step


class Reactivation(LapsedJourney):
    """ "Still with us?": one e-mail with a personal code, or a one-question survey."""

    after_last_order: Duration = timedelta(days=90)
    ask: Literal["promo", "survey"] = "promo"
    """``promo``: the step's unique code; ``survey``: why they stopped, answered by a link."""

    def makes_offer(self, step: StepSpec) -> bool:
        """Whether a segment's offer replaces the step's: every step, when it asks ``promo``."""
        return self.ask == "promo"

    def offered(self, step: StepSpec, segment: str | None) -> StepSpec:
        if self.ask == "survey":
            return replace(step, coupon_percent=None, free_shipping=False)  # it asks, no offer
        return super().offered(step, segment)

    def pin(self, step: StepSpec) -> StepSpec:
        return replace(step, survey=self.ask == "survey")


class WinBack(LapsedJourney):
    """Offer, value, farewell; no reaction by the end of the farewell: sunset."""

    after_last_order: Duration = timedelta(days=180)
    cadence_factor: float = Field(default=0, ge=0, le=20)
    """Above 0: lapsed after this many times the shop's average time between a customer's
    orders (computed from the orders) instead of ``after_last_order``."""
    value_points: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list
    )
    """What sets the shop apart, in its own words: the value phase lists them."""
    sunset_after: Duration = timedelta(days=7)
    """Grace after the last farewell: no open, click or order by then, and the customer is
    sunset (no marketing e-mail ever again)."""

    def makes_offer(self, step: StepSpec) -> bool:
        """Whether a segment's offer replaces the step's: the offer phase's steps."""
        return step.phase == "offer"

    def pin(self, step: StepSpec) -> StepSpec:
        points = tuple(self.value_points) if step.phase == "value" else ()
        return replace(step, value_points=points)

    @model_validator(mode="after")
    def _phases_in_order(self) -> WinBack:
        order = {"offer": 0, "value": 1, "farewell": 2}
        phases = [step.phase for step in self.steps]
        if any(phase is None for phase in phases):
            missing = [step.name for step in self.steps if step.phase is None]
            raise ValueError(f"every win_back step needs a phase; {missing} have none")
        ranks = [order[phase] for phase in phases if phase is not None]
        if ranks != sorted(ranks) or set(ranks) != {0, 1, 2}:
            raise ValueError(
                f"win_back phases must run offer → value → farewell, each at least once; "
                f"got {phases}"
            )
        return self


class Birthday(Journey):
    """A birthday greeting and a first-order anniversary, at a local hour on the day.

    Its steps are named ``birthday`` and ``anniversary`` (either may be left out); each
    step's ``after`` counts from ``send_at`` on the day.
    """

    send_at: Annotated[time, BeforeValidator(local_time)] = time(9)
    """Local time, in the customer's timezone (the shop's when unknown)."""

    @model_validator(mode="after")
    def _known_occasions(self) -> Birthday:
        unknown = [s.name for s in self.steps if s.name not in ("birthday", "anniversary")]
        if unknown:
            raise ValueError(f"birthday steps are 'birthday' and 'anniversary'; got {unknown}")
        return self


def local_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise ValueError("write a time of day as a string, e.g. '09:00'")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day; write e.g. '09:00'") from None
