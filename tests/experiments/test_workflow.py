"""ExperimentsWorkflow on the time-skipping server: one activity call decides the winner;
a store that cannot work fails the run at once, without retries."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.experiments import ExperimentActivities
from tests.experiments.kit import NAME, NOW, later_wins
from triggermail.journeys import JourneysConfig
from triggermail.store import Experiment, make_engine, make_session_factory
from worker import WORKFLOWS
from workflows.experiments import ExperimentsInput, ExperimentsWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"


@pytest.fixture
async def worker(
    env: WorkflowEnvironment, sqlite_sessions: sessionmaker[Session], journeys: JourneysConfig
) -> AsyncIterator[str]:
    task_queue = f"tq-{uuid.uuid4()}"
    evaluation = ExperimentActivities(
        session_factory=sqlite_sessions, journeys=journeys, clock=lambda: NOW
    )
    with ThreadPoolExecutor(2) as executor:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[ExperimentsWorkflow],
            activities=evaluation.activities(),
            activity_executor=executor,
        ):
            yield task_queue


async def test_an_hourly_run_decides_the_winner(
    env: WorkflowEnvironment, worker: str, sqlite_sessions: sessionmaker[Session]
) -> None:
    with sqlite_sessions() as session:
        later_wins(session)
    handle = await env.client.start_workflow(
        ExperimentsWorkflow.run,
        ExperimentsInput(),
        id=f"triggermail-experiments-{uuid.uuid4()}",
        task_queue=worker,
    )

    result = await handle.result()

    assert result.evaluated == [NAME]
    assert [(d.experiment, d.winner) for d in result.decided] == [(NAME, "later")]
    with sqlite_sessions() as session:
        record = session.get(Experiment, NAME)
    assert record is not None and record.winner == "later"
    history = await handle.fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    if os.environ.get("TRIGGERMAIL_RECORD_HISTORIES"):
        (HISTORIES / "experiments-winner.json").write_text(history.to_json())


async def test_a_store_not_migrated_fails_the_run_at_the_first_attempt(
    env: WorkflowEnvironment, tmp_path: Path, journeys: JourneysConfig
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    evaluation = ExperimentActivities(
        session_factory=make_session_factory(engine), journeys=journeys, clock=lambda: NOW
    )
    task_queue = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(2) as executor:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[ExperimentsWorkflow],
            activities=evaluation.activities(),
            activity_executor=executor,
        ):
            with pytest.raises(WorkflowFailureError) as failed:
                await env.client.execute_workflow(
                    ExperimentsWorkflow.run,
                    ExperimentsInput(),
                    id=f"triggermail-experiments-{uuid.uuid4()}",
                    task_queue=task_queue,
                )
    engine.dispose()
    cause = failed.value.cause
    assert isinstance(cause, ActivityError)
    assert cause.retry_state == RetryState.NON_RETRYABLE_FAILURE
    error = cause.cause
    assert isinstance(error, ApplicationError) and error.type == "ExperimentsError"
    assert "triggermail db upgrade" in error.message
