"""What every routing rule shares: the config and clock, the customer's spec, a start built
from the journey's registry entry, and whether an event is too old to start anything.

Apart from the rules themselves (``starter.routing``, ``starter.order_rules``), which
each read like their journey's row: entry, re-entry, exit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from starter.rows import lookup
from starter.starting import (
    StartJourney,
)
from triggermail.journeys import JourneysConfig
from triggermail.store import (
    Customer,
    EmailSend,
)
from triggermail.winners import Winners
from workflows import registry
from workflows.types import (
    JourneySpec,
)


class Rules:
    """The plumbing of :class:`starter.routing.Router`."""

    def __init__(self, journeys: JourneysConfig, clock: Callable[[], datetime]) -> None:
        self.journeys = journeys
        self.clock = clock
        self.winners = Winners()

    def _spec(self, session: Session, journey: str, customer_id: str) -> JourneySpec:
        """The journey as this customer enters it: their variants, or the holdout."""
        winners = self.winners.current(session, self.journeys)
        return self.journeys.spec(journey, customer_id=customer_id, winners=winners)

    def _start(
        self,
        session: Session,
        journey: str,
        *key: str,
        customer_id: str,
        timezone: str | None,
        input: Callable[..., Any],
        signal: str | None = None,
        signal_arg: Any = None,
        once: bool = False,
        **fields: Any,
    ) -> StartJourney:
        """A start of ``journey`` under its registry ID for ``key``: its ``input`` dataclass
        gets the customer, their spec and timezone, and the journey's own ``fields``."""
        entry = registry.journey(journey)
        return StartJourney(
            journey=entry.name,
            workflow_id=entry.workflow_id(*key),
            customer_id=customer_id,
            input=input(
                customer_id=customer_id,
                spec=self._spec(session, entry.name, customer_id),
                timezone=timezone,
                **fields,
            ),
            signal=signal,
            signal_arg=signal_arg,
            once=once,
        )

    def _stale(self, at: datetime, horizon: timedelta) -> bool:
        # History being imported: its journey would already be over.
        return self.clock() - at > horizon


def ran_before(session: Session, customer_id: str, workflow_id: str) -> bool:
    """Whether a once-ever journey ID has ledger rows: Temporal forgets a closed run after
    the namespace's retention, and an order re-reported after that must not start it over."""
    row = session.scalar(
        select(EmailSend.id)
        .where(EmailSend.customer_id == customer_id, EmailSend.workflow_id == workflow_id)
        .limit(1)
    )
    return row is not None


def timezone_of(session: Session, customer_id: str) -> str | None:
    customer = lookup(session, Customer, customer_id)
    return customer.timezone if customer else None
