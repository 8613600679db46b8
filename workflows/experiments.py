"""The experiments' hourly evaluation: figures recorded, automatic winners decided.

A Temporal Schedule (``triggermail-experiments``) starts it every hour; ``triggermail
experiments --decide`` does the same from the command line, without Temporal. One activity
call reads the ledger, computes every configured experiment's figures and records the
winners that are due (:func:`triggermail.analytics.experiments.evaluate`); the intake gives new
entries a winner from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

EVALUATE_ACTIVITY = "experiments_evaluate"
NON_RETRYABLE = ["ExperimentsError"]


@dataclass
class ExperimentsInput:
    """One evaluation of every configured experiment; the Schedule starts it as is."""

    decide: bool = True
    """Record the figures and the winners that are due; False: compute, record nothing."""


@dataclass
class Decision:
    """An automatic winner decided by this evaluation."""

    experiment: str
    winner: str
    probability: float
    """The winner's posterior probability of converting best."""


@dataclass
class ExperimentsResult:
    evaluated: list[str] = field(default_factory=list)
    """The experiments evaluated, by name."""
    decided: list[Decision] = field(default_factory=list)
    """Winners decided now (earlier decisions are never revisited, nor listed again)."""


CALL_TIMEOUT = timedelta(minutes=5)
"""One evaluation: a report's queries per experiment and a few thousand Monte Carlo draws."""
GIVE_UP_AFTER = timedelta(minutes=50)
"""Retried through a short store outage, then left to the next hour's run."""
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE,
)


@workflow.defn(name="ExperimentsWorkflow")
class ExperimentsWorkflow:
    """One evaluation of the experiments (ID: ``triggermail-experiments-<scheduled time>``
    from the Schedule). Carries experiment and variant names only."""

    @workflow.run
    async def run(self, input: ExperimentsInput) -> ExperimentsResult:
        return await workflow.execute_activity(
            EVALUATE_ACTIVITY,
            input,
            result_type=ExperimentsResult,
            summary="evaluate experiments" + ("" if input.decide else " (figures only)"),
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=GIVE_UP_AFTER,
            retry_policy=RETRY,
        )
