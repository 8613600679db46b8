"""A journey's steps as a customer entered it: what the journeys TOML gives every journey
input, pinned for the journey's whole life.

In the base, beneath both the config that builds them and the workflows that carry them.
Fields are only ever added with defaults, so running journeys' histories still decode.
"""

# No ``from __future__ import annotations``: the workflow sandbox decodes these through
# ``workflows.types`` without this module in its own ``sys.modules``, so the hints must be
# objects already, not names to look up.
from dataclasses import dataclass


@dataclass(frozen=True)
class StepSpec:
    """One e-mail of a journey, snapshotted from the journeys TOML at entry."""

    name: str
    """Step name, unique within the journey (``"reminder"``)."""
    after_s: float
    """Seconds after the previous step (or entry, for the first step)."""
    template: str
    """Template name under ``templates/`` without suffix (``"abandoned_cart/reminder"``)."""
    coupon_percent: int | None = None
    """Percent off for a unique coupon created with this e-mail; ``None`` for no coupon."""
    coupon_valid_s: float | None = None
    """How long the coupon stays valid after it is created."""
    recommendations: int = 0
    """How many recommended products the e-mail shows (looked up when it is sent)."""
    free_shipping: bool = False
    """The e-mail offers free shipping."""
    phase: str | None = None
    """Win-back: ``offer``, ``value`` or ``farewell``."""
    variant: str = "control"
    """The A/B variant this customer was assigned at entry (its changes already applied
    above); ``holdout`` for a customer who is never mailed."""
    hold: bool = True
    """False: the frequency cap and quiet hours never hold this e-mail back (an answer to
    the customer's own action, such as the thank-you for an order)."""
    pinned: bool = False
    """True on every step of a journey entered since December 2026: the fields below, and
    a lapsed journey's segment offer above, are what the e-mail says, whatever the
    journeys TOML says when it goes (a deploy changes new entries, never running ones).
    False (entered before): the send reads them from the config it runs with, as then."""
    subject: str | dict[str, str] | None = None
    """The variant's own subject line (one, or one per locale); None: the template's."""
    review_bonus: str | None = None
    """Review request: what the shop gives for a review (``[review_request] bonus``)."""
    value_points: tuple[str, ...] = ()
    """Win-back's value phase: what sets the shop apart (``[win_back] value_points``)."""
    survey: bool = False
    """Reactivation that asks why (``ask = "survey"``): the e-mail offers no code."""


@dataclass(frozen=True)
class JourneySpec:
    """A journey's configuration as it was when the customer entered."""

    name: str
    steps: list[StepSpec]
    sunset_after_s: float | None = None
    """Win-back: the grace after the farewell, pinned at entry; None (entered before
    December 2026): read from the config when the farewell has gone."""
