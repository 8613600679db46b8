"""Every journey, once: the registry that routing, the sweep, the worker, the send's content,
the report, the CLI, previews and the customer card read.

Adding a journey is its module (workflow + ``JOURNEY``), its line here, its TOML table
and its templates; ``tests/test_registry.py`` checks that every consumer covers it.
"""

from __future__ import annotations

from workflows import (
    abandoned_cart,
    birthday,
    browse_abandonment,
    post_purchase,
    reactivation,
    replenishment,
    review_request,
    welcome,
    win_back,
)
from workflows.definition import JourneyDef

JOURNEYS: tuple[JourneyDef, ...] = (
    abandoned_cart.JOURNEY,
    browse_abandonment.JOURNEY,
    post_purchase.JOURNEY,
    review_request.JOURNEY,
    replenishment.JOURNEY,
    welcome.JOURNEY,
    birthday.JOURNEY,
    reactivation.JOURNEY,
    win_back.JOURNEY,
)
"""In the order reports and listings show them."""

BY_NAME: dict[str, JourneyDef] = {journey.name: journey for journey in JOURNEYS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
SWEPT: dict[str, JourneyDef] = {
    kind: journey for journey in JOURNEYS for kind in journey.sweep_kinds
}
"""The daily sweep's kinds, each with the journey it starts."""


def journey(name: str) -> JourneyDef:
    """The journey called ``name``.

    Raises:
        KeyError: saying which names there are.
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a journey; known: {', '.join(NAMES)}") from None


def keyed_by(*keys: str) -> list[JourneyDef]:
    """The journeys that run once per one of ``keys`` (``customer``, ``order``…)."""
    return [journey for journey in JOURNEYS if journey.keyed_by in keys]


def customer_journey_ids(customer_id: str) -> dict[str, str]:
    """Where a customer's one-at-a-time journeys run, by journey name (those keyed by order,
    product, lapse or occasion are found from the store: ``starter.starting.journeys_of``)."""
    return {j.name: j.workflow_id(customer_id) for j in keyed_by("customer")}


def about(*subjects: str) -> frozenset[str]:
    """The names of the journeys whose e-mails are about one of ``subjects`` (``cart``,
    ``views``, ``order``, ``lapse``…): what the send looks up for them."""
    return frozenset(journey.name for journey in JOURNEYS if journey.about in subjects)
