"""The daily Schedule and ``triggermail sweep`` against the Temporal dev server: the
Schedule's spec and action as the cluster has them, a scheduled run, and the command run
twice for a day starting each journey once (read back from Temporal's describe)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)
from temporalio.testing import WorkflowEnvironment

from tests.devserver import cli, pause_in_effect
from tests.sweep.kit import at, customer, journeys, sweep_worker
from triggermail.ops.schedules import SWEEP_SCHEDULE_ID, apply_sweep_schedule
from triggermail.store import SweepRun, make_engine, make_session_factory


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
async def worker(
    dev_env: WorkflowEnvironment, sessions: sessionmaker[Session]
) -> AsyncIterator[str]:
    async with sweep_worker(dev_env.client, sessions, journeys()) as task_queue:
        yield task_queue


async def test_the_schedule_runs_the_sweep_daily_at_the_configured_hour(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    assert await apply_sweep_schedule(client, at=time(3, 30), task_queue="tq-x") in (
        "created",
        "updated",
    )

    described = await client.get_schedule_handle(SWEEP_SCHEDULE_ID).describe()

    spec = described.schedule.spec
    assert spec.time_zone_name == "UTC"
    [calendar] = spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(3, 3)]
    assert [(r.start, r.end) for r in calendar.minute] == [(30, 30)]
    assert calendar.day_of_month[0].start == 1 and calendar.day_of_month[0].end == 31
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.id) == (
        "SweepWorkflow",
        "tq-x",
        SWEEP_SCHEDULE_ID,
    )
    policy = described.schedule.policy
    assert policy.overlap == ScheduleOverlapPolicy.SKIP
    assert policy.catchup_window == timedelta(hours=12)
    assert described.info.next_action_times[0].astimezone(UTC).time() == time(3, 30)


async def test_applying_again_updates_and_keeps_an_operators_pause(
    dev_env: WorkflowEnvironment,
) -> None:
    client = dev_env.client
    await apply_sweep_schedule(client, at=time(2), task_queue="tq-x")
    handle = client.get_schedule_handle(SWEEP_SCHEDULE_ID)
    await pause_in_effect(handle, note="maintenance")

    result = await asyncio.to_thread(
        cli, dev_env, ["schedules", "apply"], TRIGGERMAIL_TASK_QUEUE="tq-y"
    )

    assert result.exit_code == 0, result.output
    assert f"schedule {SWEEP_SCHEDULE_ID} updated" in result.output
    assert "daily at 02:00 UTC" in result.output
    described = await handle.describe()
    assert described.schedule.state.paused
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == "tq-y"
    await handle.unpause()


async def test_a_scheduled_run_sweeps_its_day(
    dev_env: WorkflowEnvironment, worker: str, sessions: sessionmaker[Session]
) -> None:
    client = dev_env.client
    await apply_sweep_schedule(client, at=time(2), task_queue=worker)
    handle = client.get_schedule_handle(SWEEP_SCHEDULE_ID)

    await handle.trigger()

    async def swept() -> SweepRun:
        while True:
            with sessions() as session:
                run = session.scalars(select(SweepRun)).first()
            if run is not None and run.finished_at is not None:
                return run
            await asyncio.sleep(0.2)

    run = await asyncio.wait_for(swept(), timeout=20)
    recent = (await handle.describe()).info.recent_actions
    # The day the cluster's clock gave the run, not ours: the two may disagree near midnight.
    assert run.day == recent[-1].scheduled_at.astimezone(UTC).date()
    action = recent[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    assert action.workflow_id.startswith(f"{SWEEP_SCHEDULE_ID}-")


async def test_sweep_command_twice_starts_each_journey_once(
    dev_env: WorkflowEnvironment, sessions: sessionmaker[Session], sqlite_url: str
) -> None:
    day = date(2026, 11, 23)
    # The worker's clock reads the hour the Schedule sweeps that day: whether a greeting's
    # day is over is the sweep's to decide from its clock, not from the calendar we run on.
    async with sweep_worker(
        dev_env.client, sessions, journeys(), clock=lambda: at(day, 2)
    ) as worker:
        await _sweep_twice(dev_env, worker, sessions, sqlite_url, day)


async def _sweep_twice(
    dev_env: WorkflowEnvironment,
    worker: str,
    sessions: sessionmaker[Session],
    sqlite_url: str,
    day: date,
) -> None:
    lapse = datetime(2026, 8, 25, 15, tzinfo=UTC)  # 90 days before
    with sessions.begin() as session:
        session.add(customer("ana", last_order=lapse))
        session.add(customer("ben", last_order=lapse, consent=False))
        session.add(customer("cat", birthday=date(1990, 11, 24), timezone="Pacific/Kiritimati"))
    env = {"TRIGGERMAIL_DATABASE_URL": sqlite_url, "TRIGGERMAIL_TASK_QUEUE": worker}

    first = await asyncio.to_thread(cli, dev_env, ["sweep", "--date", "2026-11-23"], **env)
    again = await asyncio.to_thread(cli, dev_env, ["sweep", "--date", "2026-11-23"], **env)

    assert first.exit_code == 0, first.output
    assert "2 journey(s) started" in first.output
    assert "no_consent 1" in first.output
    assert again.exit_code == 0, again.output
    assert "0 journey(s) started" in again.output
    reactivation = await dev_env.client.get_workflow_handle(
        "reactivation/ana/2026-08-25"
    ).describe()
    assert reactivation.status == WorkflowExecutionStatus.RUNNING
    assert reactivation.workflow_type == "ReactivationWorkflow"
    birthday = dev_env.client.get_workflow_handle("birthday/cat/2026")
    assert (await birthday.describe()).workflow_type == "BirthdayWorkflow"
    runs = [
        w.id async for w in dev_env.client.list_workflows('WorkflowType = "ReactivationWorkflow"')
    ]
    assert runs.count("reactivation/ana/2026-08-25") == 1
    with sessions() as session:
        sweep_run = session.get(SweepRun, day)
    assert sweep_run is not None and sweep_run.counts["reactivation"]["already_started"] == 1
    await dev_env.client.get_workflow_handle("reactivation/ana/2026-08-25").terminate("test over")
