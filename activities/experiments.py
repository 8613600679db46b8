"""The experiments' evaluation, for the hourly Schedule and ``triggermail experiments``.

Both run :meth:`ExperimentActivities.statuses`, so a winner decided from the command
line is decided exactly as the Schedule would have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from triggermail.analytics.experiments import ExperimentStatus, evaluate
from triggermail.journeys import JourneysConfig
from triggermail.store import Experiment, utcnow
from workflows.experiments import (
    EVALUATE_ACTIVITY,
    Decision,
    ExperimentsInput,
    ExperimentsResult,
)


class ExperimentsError(Exception):
    """An evaluation that cannot work, whatever the retries (a store not migrated): not
    retried; the next hour's run tries again."""


class ExperimentActivities:
    """The experiments' evaluation; ``worker.py`` hands in the store, the journeys config
    and the clock."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        journeys: JourneysConfig,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = session_factory
        self.journeys = journeys
        self.clock = clock

    def activities(self) -> list[Callable[..., Any]]:
        return [self.evaluate]

    @activity.defn(name=EVALUATE_ACTIVITY)
    async def evaluate(self, input: ExperimentsInput) -> ExperimentsResult:
        """Every configured experiment's figures; with ``decide``, the figures and the
        winners that are due recorded in the store.

        Raises:
            ExperimentsError: the store has no ``experiments`` table (not migrated).
        """
        statuses = await asyncio.to_thread(self.statuses, decide=input.decide)
        result = summary(statuses)
        for decision in result.decided:
            activity.logger.info(
                "experiment %s: %s wins at %.1f%%",
                decision.experiment,
                decision.winner,
                decision.probability * 100,
            )
        return result

    def statuses(self, *, decide: bool) -> list[ExperimentStatus]:
        """Evaluate now (``clock``); with ``decide``, record as the Schedule does."""
        if not self.journeys.experiments():
            return []  # nothing configured: not even a query
        with self.sessions() as session:
            if not inspect(session.connection()).has_table(Experiment.__tablename__):
                raise ExperimentsError(
                    "the store has no experiments table: run `triggermail db upgrade`"
                )
            return evaluate(session, self.journeys, now=self.clock(), decide=decide)


def summary(statuses: list[ExperimentStatus]) -> ExperimentsResult:
    """What an evaluation came to: the experiments' names and the winners decided now."""
    return ExperimentsResult(
        evaluated=[status.name for status in statuses],
        decided=[
            Decision(status.name, status.winner, status.probability)
            for status in statuses
            if status.decided_now and status.winner is not None and status.probability is not None
        ],
    )
