"""The experiments activity on SQLite and PostgreSQL: what the hourly Schedule records."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.experiments import ExperimentActivities, ExperimentsError
from tests.experiments.kit import NAME, NOW, later_wins
from tests.report.builders import T0
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Experiment, make_engine, make_session_factory
from workflows.experiments import NON_RETRYABLE, ExperimentsInput, ExperimentsResult


def activities(sessions: sessionmaker[Session], journeys: JourneysConfig) -> ExperimentActivities:
    return ExperimentActivities(session_factory=sessions, journeys=journeys, clock=lambda: NOW)


async def test_the_winner_is_recorded_once_with_its_probability(
    sessions: sessionmaker[Session], journeys: JourneysConfig
) -> None:
    with sessions() as session:
        later_wins(session)
    evaluate = activities(sessions, journeys).evaluate

    first = await ActivityEnvironment().run(evaluate, ExperimentsInput())
    again = await ActivityEnvironment().run(evaluate, ExperimentsInput())

    assert first.evaluated == [NAME]
    [decision] = first.decided
    assert (decision.experiment, decision.winner) == (NAME, "later")
    assert decision.probability > 0.99
    assert again == ExperimentsResult(evaluated=[NAME], decided=[])
    with sessions() as session:
        record = session.get(Experiment, NAME)
    assert record is not None
    assert (record.winner, record.probability) == ("later", decision.probability)
    assert record.decided_at is not None and record.decided_at.replace(tzinfo=NOW.tzinfo) == NOW
    assert record.started_at.replace(tzinfo=T0.tzinfo) == T0
    assert record.figures is not None
    assert record.figures["later"]["converted"] == 20
    assert record.figures["control"]["sent"] == 40


async def test_figures_only_records_nothing(
    sessions: sessionmaker[Session], journeys: JourneysConfig
) -> None:
    with sessions() as session:
        later_wins(session)

    result = await ActivityEnvironment().run(
        activities(sessions, journeys).evaluate, ExperimentsInput(decide=False)
    )

    assert result == ExperimentsResult(evaluated=[NAME], decided=[])
    with sessions() as session:
        assert session.get(Experiment, NAME) is None


async def test_undecided_experiments_are_evaluated_and_no_winner_named(
    sessions: sessionmaker[Session], journeys: JourneysConfig
) -> None:
    result = await ActivityEnvironment().run(
        activities(sessions, journeys).evaluate, ExperimentsInput()
    )

    assert result == ExperimentsResult(evaluated=[NAME], decided=[])
    with sessions() as session:
        record = session.get(Experiment, NAME)
    assert record is not None and record.winner is None and record.evaluated_at is not None


async def test_without_experiments_nothing_is_read(journeys: JourneysConfig) -> None:
    def no_store() -> Session:
        raise AssertionError("the store was read")

    evaluation = ExperimentActivities(
        session_factory=no_store,  # type: ignore[arg-type]
        journeys=load_journeys(),
        clock=lambda: NOW,
    )

    result = await ActivityEnvironment().run(evaluation.evaluate, ExperimentsInput())

    assert result == ExperimentsResult()


async def test_a_store_not_migrated_fails_without_retries(
    tmp_path: Path, journeys: JourneysConfig
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    evaluation = activities(make_session_factory(engine), journeys)

    with pytest.raises(ExperimentsError, match="triggermail db upgrade"):
        await ActivityEnvironment().run(evaluation.evaluate, ExperimentsInput())
    engine.dispose()
    assert ExperimentsError.__name__ in NON_RETRYABLE
