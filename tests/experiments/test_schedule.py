"""The hourly experiments Schedule against the Temporal dev server: its spec, policy and
action as the cluster has them, ``schedules apply`` creating it beside the daily sweep's
(an operator's pause kept), and a triggered run recording the winner."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.experiments import ExperimentActivities
from tests.devserver import cli, pause_in_effect
from tests.experiments.kit import NAME, NOW, later_wins
from triggermail.journeys import JourneysConfig
from triggermail.ops.schedules import (
    EXPERIMENTS_SCHEDULE_ID,
    SWEEP_SCHEDULE_ID,
    apply_experiments_schedule,
)
from triggermail.store import Experiment
from workflows.experiments import ExperimentsWorkflow


async def test_the_schedule_evaluates_hourly_and_never_twice_at_once(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    assert await apply_experiments_schedule(client, task_queue="tq-x") in ("created", "updated")

    described = await client.get_schedule_handle(EXPERIMENTS_SCHEDULE_ID).describe()

    [interval] = described.schedule.spec.intervals
    assert interval.every == timedelta(hours=1)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.id) == (
        "ExperimentsWorkflow",
        "tq-x",
        EXPERIMENTS_SCHEDULE_ID,
    )
    policy = described.schedule.policy
    assert policy.overlap == ScheduleOverlapPolicy.SKIP
    assert policy.catchup_window == timedelta(minutes=30)
    [first, second, *_] = described.info.next_action_times
    assert second - first == timedelta(hours=1)


async def test_schedules_apply_creates_both_and_keeps_an_operators_pause(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    await apply_experiments_schedule(client, task_queue="tq-x")
    handle = client.get_schedule_handle(EXPERIMENTS_SCHEDULE_ID)
    await pause_in_effect(handle, note="maintenance")

    result = await asyncio.to_thread(
        cli, dev_env, ["schedules", "apply"], TRIGGERMAIL_TASK_QUEUE="tq-y"
    )

    assert result.exit_code == 0, result.output
    assert f"schedule {SWEEP_SCHEDULE_ID} " in result.output
    assert f"schedule {EXPERIMENTS_SCHEDULE_ID} updated: ExperimentsWorkflow hourly" in (
        " ".join(result.output.split())
    )
    described = await handle.describe()
    assert described.schedule.state.paused
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == "tq-y"
    await handle.unpause()


async def test_a_scheduled_run_records_the_winner(
    dev_env: WorkflowEnvironment,
    sqlite_sessions: sessionmaker[Session],
    journeys: JourneysConfig,
) -> None:
    with sqlite_sessions() as session:
        later_wins(session)
    task_queue = f"tq-{uuid.uuid4()}"
    evaluation = ExperimentActivities(
        session_factory=sqlite_sessions, journeys=journeys, clock=lambda: NOW
    )
    client = dev_env.client
    await apply_experiments_schedule(client, task_queue=task_queue)
    handle = client.get_schedule_handle(EXPERIMENTS_SCHEDULE_ID)

    async def decided() -> Experiment:
        while True:
            with sqlite_sessions() as session:
                record = session.get(Experiment, NAME)
            if record is not None and record.winner is not None:
                return record
            await asyncio.sleep(0.2)

    with ThreadPoolExecutor(2) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[ExperimentsWorkflow],
            activities=evaluation.activities(),
            activity_executor=executor,
        ):
            await handle.trigger()
            record = await asyncio.wait_for(decided(), timeout=20)

    assert record.winner == "later"
    recent = (await handle.describe()).info.recent_actions
    action = recent[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    assert action.workflow_id.startswith(f"{EXPERIMENTS_SCHEDULE_ID}-")
