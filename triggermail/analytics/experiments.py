"""A/B experiments on journey steps: their figures, and the automatic winner.

Assignment happens at entry (:mod:`triggermail.variants`, applied by
:meth:`JourneysConfig.spec`); this module reads what came of it. An experiment is a step
with variants; its figures count only entries whose conversion window has closed (the
journey's longest timings plus the click window), so a variant sent later is never
judged on fewer days. The probability that each variant converts best is the Bayesian
answer with a uniform prior: Beta(1 + converted, 1 + entered - converted) per variant,
compared by Monte Carlo draws seeded by the experiment's name (the same counts always
give the same answer). With ``auto_winner``, once every variant reached
``min_recipients`` and one variant's probability reached ``probability``, the winner is
recorded in ``experiments``; new entries get it from then on, and the decision is never
revisited (rename the experiment to start again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triggermail.analytics.report import build_report
from triggermail.journey_tables import Step
from triggermail.journeys import JourneysConfig
from triggermail.store import EmailSend, Experiment
from triggermail.variants import CONTROL, HOLDOUT, assign_variant, in_holdout, unit

__all__ = [
    "CONTROL",
    "HOLDOUT",
    "ExperimentStatus",
    "VariantFigures",
    "assign_variant",
    "evaluate",
    "in_holdout",
    "probability_best",
]

DRAWS = 40_000
"""Monte Carlo draws per variant: the probability is then good to about ±0.005."""


@dataclass
class VariantFigures:
    name: str
    weight: float
    entered: int = 0
    """Entries (whose window closed) that reached the step with this variant."""
    sent: int = 0
    converted: int = 0
    rate: float | None = None
    ci: tuple[float, float] | None = None
    """95 % Wilson interval of the conversion rate."""
    probability_best: float | None = None


@dataclass
class ExperimentStatus:
    name: str
    journey: str
    step: str
    started_at: datetime
    counted_until: datetime
    """Entries up to then are counted: later ones are still inside their window."""
    variants: list[VariantFigures]
    min_recipients: int | None = None
    threshold: float | None = None
    """``auto_winner``'s settings; None when the experiment has no automatic winner."""
    winner: str | None = None
    probability: float | None = None
    decided_at: datetime | None = None
    decided_now: bool = False
    note: str = ""
    """Why there is no winner yet, in an operator's words."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probability_best(counts: dict[str, tuple[int, int]], *, seed: str) -> dict[str, float]:
    """Each variant's posterior probability of the highest conversion rate.

    Args:
        counts: ``{variant: (converted, entered)}``.
        seed: fixes the draws, so the same counts always give the same answer.
    """
    names = list(counts)
    rng = np.random.default_rng(int(unit("probability_best", seed) * 2**63))
    draws = np.stack([rng.beta(1 + k, 1 + max(n - k, 0), size=DRAWS) for k, n in counts.values()])
    best = np.bincount(np.argmax(draws, axis=0), minlength=len(names))
    return {name: float(wins) / DRAWS for name, wins in zip(names, best, strict=True)}


def evaluate(
    session: Session, config: JourneysConfig, *, now: datetime, decide: bool = True
) -> list[ExperimentStatus]:
    """Every configured experiment's figures; with ``decide``, record the winners that are
    due (and each experiment's figures) in the store."""
    try:
        return _evaluate(session, config, now=now, decide=decide)
    except IntegrityError:
        # Another evaluation (the Schedule's, an operator's) recorded a new experiment
        # first: read it as that one left it.
        session.rollback()
        return _evaluate(session, config, now=now, decide=decide)


def _evaluate(
    session: Session, config: JourneysConfig, *, now: datetime, decide: bool
) -> list[ExperimentStatus]:
    statuses = []
    for name, journey, step in config.experiments():
        record = session.get(Experiment, name)
        if record is None:
            record = Experiment(
                name=name,
                journey=journey,
                step=step.name,
                started_at=_first_use(session, journey, step) or now,
            )
            if decide:
                session.add(record)
        status = _figures(session, config, record, step, now)
        _decide(record, status, now, record_it=decide)
        if decide:
            record.figures = {v.name: _figure_dict(v) for v in status.variants}
            record.evaluated_at = now
        statuses.append(status)
    if decide:
        session.commit()
    else:
        session.rollback()
    return statuses


def _first_use(session: Session, journey: str, step: Step) -> datetime | None:
    """When a variant of the step was first asked for: the experiment began then."""
    first: datetime | None = session.scalar(
        select(func.min(EmailSend.due_at)).where(
            EmailSend.journey == journey,
            EmailSend.step == step.name,
            EmailSend.variant.in_([v.name for v in step.variants]),
        )
    )
    return first


def _figures(
    session: Session, config: JourneysConfig, record: Experiment, step: Step, now: datetime
) -> ExperimentStatus:
    journey = getattr(config, record.journey)
    until = now - journey.horizon() - config.attribution.click_window
    variants = [VariantFigures(name, weight) for name, weight in step.weights()]
    status = ExperimentStatus(
        name=record.name,
        journey=record.journey,
        step=step.name,
        started_at=record.started_at,
        counted_until=until,
        variants=variants,
        min_recipients=step.auto_winner.min_recipients if step.auto_winner else None,
        threshold=step.auto_winner.probability if step.auto_winner else None,
        winner=record.winner,
        probability=record.probability,
        decided_at=record.decided_at,
    )
    if until > record.started_at:
        report = build_report(
            session, config, since=record.started_at, until=until, journey=record.journey
        )
        rows = {
            row.variant: row
            for part in report.journeys
            for row in part.steps
            if row.step == step.name
        }
        for figures in variants:
            row = rows.get(figures.name)
            if row is None:
                continue
            figures.entered, figures.sent, figures.converted = row.entered, row.sent, row.converted
            figures.rate = row.conversion_rate
            figures.ci = (
                (row.conversion_ci.low, row.conversion_ci.high) if row.conversion_ci else None
            )
    if all(v.entered for v in variants):
        best = probability_best(
            {v.name: (v.converted, v.entered) for v in variants}, seed=record.name
        )
        for figures in variants:
            figures.probability_best = best[figures.name]
    return status


def _decide(
    record: Experiment, status: ExperimentStatus, now: datetime, *, record_it: bool
) -> None:
    """Say where the experiment stands; with ``record_it``, record a winner that is due."""
    if record.winner is not None:
        status.note = f"decided {record.decided_at:%Y-%m-%d %H:%M} UTC"
        return
    if status.min_recipients is None or status.threshold is None:
        status.note = "no automatic winner: read the figures"
        return
    short = [v.name for v in status.variants if v.sent < status.min_recipients]
    if short:
        status.note = f"waiting for {status.min_recipients} recipients each ({', '.join(short)})"
        return
    leader = max(status.variants, key=lambda v: v.probability_best or 0.0)
    if (leader.probability_best or 0.0) < status.threshold:
        status.note = (
            f"{leader.name} leads at {leader.probability_best or 0:.1%}, "
            f"below {status.threshold:.0%}"
        )
        return
    if not record_it:
        status.note = (
            f"no winner yet: {leader.name} wins at {leader.probability_best:.1%} at the "
            "next decision (hourly; --decide: now)"
        )
        return
    record.winner, record.probability, record.decided_at = (
        leader.name,
        leader.probability_best,
        now,
    )
    status.winner, status.probability, status.decided_at = (
        record.winner,
        record.probability,
        now,
    )
    status.decided_now = True
    status.note = f"{leader.name} wins at {leader.probability_best:.1%}; new entries get it"


def _figure_dict(figures: VariantFigures) -> dict[str, Any]:
    return {
        "entered": figures.entered,
        "sent": figures.sent,
        "converted": figures.converted,
        "probability_best": figures.probability_best,
    }
