"""What a journey declares beside its workflow, once: the registry's entry.

Each journey module ends with ``JOURNEY = JourneyDef(...)``; ``workflows.registry`` lists
those, and routing, the sweep, the worker, the send's content, the report, the CLI,
previews and the customer card read them instead of lists of their own. Plain data:
the rules that need the store (``starter.routing``) or a render (``activities``) are
written there, keyed by what a journey declares here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Key = Literal["customer", "order", "product", "lapse", "occasion"]
About = Literal["cart", "views", "order", "lapse", "occasion", "customer"]


@dataclass(frozen=True)
class JourneyDef:
    """One journey as every part of triggermail knows it."""

    workflow: type[Any]
    """The workflow class; its ``journey_name`` names the journey (and its TOML table)
    and its ``title`` shows in the Temporal UI."""
    keyed_by: Key
    """What one journey runs per, beside the customer: ``customer`` (one at a time),
    ``order`` (one per order, ever), ``product`` (per product or category), ``lapse`` (per
    lapse the sweep finds) or ``occasion`` (per birthday or anniversary and year)."""
    workflow_id: Callable[..., str]
    """The ID scheme (a function of :mod:`triggermail.ids`): a deterministic business key."""
    enters_on: tuple[str, ...]
    """What starts it: ``track`` event names, ``identify``, or ``sweep`` (the daily sweep)."""
    exits_on: tuple[str, ...]
    """Events that end it by signal, besides an unsubscribe and an operator's cancel."""
    about: About
    """What its e-mails show, looked up at send time (and sampled in previews)."""
    needs_products: bool = False
    """An e-mail with no product left to show is not sent (``nothing_to_show``)."""
    sweep_kinds: Mapping[str, Callable[..., str]] = field(default_factory=dict)
    """The daily sweep's kinds that start it, with the ID each starts it under (a
    birthday and a first-order anniversary both start the birthday journey)."""
    report_recovery: bool = False
    """The report shows the carts it recovered, beside its conversions."""

    @property
    def name(self) -> str:
        return str(self.workflow.journey_name)

    @property
    def title(self) -> str:
        return str(self.workflow.title)

    @property
    def workflow_type(self) -> str:
        """The workflow's type name, as histories and starts by name have it."""
        return str(getattr(self.workflow, "__temporal_workflow_definition").name)

    @property
    def ends_on_purchase(self) -> bool:
        return "Order Completed" in self.exits_on
