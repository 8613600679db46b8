"""The sweep workflow on the time-skipping server: pages, continue-as-new, journeys started
by type name with their IDs, search attributes and summary, and a second sweep a no-op.

The journeys are stand-ins registered under the real workflow type names: the sweep needs
none of their code, only their names.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.sweep.kit import at, customer, journeys, sweep_worker
from triggermail.journeys import Sweep
from triggermail.search_attributes import CUSTOMER_ID, JOURNEY
from triggermail.store import make_engine, make_session_factory
from workflows.sweep import SweepInput, SweepResult, SweepWorkflow

D = date(2026, 11, 23)


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
async def worker(env: WorkflowEnvironment, sessions: sessionmaker[Session]) -> AsyncIterator[str]:
    config = journeys(sweep=Sweep(page_size=10))
    async with sweep_worker(env.client, sessions, config, clock=lambda: at(D, 2)) as task_queue:
        yield task_queue


async def run_sweep(
    env: WorkflowEnvironment, task_queue: str, *, pages_per_run: int = 50
) -> SweepResult:
    # The journeys it starts keep running: skipping time would run them out.
    with env.auto_time_skipping_disabled():
        return await env.client.execute_workflow(
            SweepWorkflow.run,
            SweepInput(day=D.isoformat(), pages_per_run=pages_per_run),
            id=f"sweep/{D}/{uuid.uuid4()}",
            task_queue=task_queue,
        )


async def test_the_sweep_pages_through_and_starts_each_journey_once(
    env: WorkflowEnvironment, worker: str, sessions: sessionmaker[Session]
) -> None:
    lapse90, lapse180 = at(D - timedelta(days=90), 9), at(D - timedelta(days=180), 9)
    with sessions.begin() as session:
        session.add_all(customer(f"r{i:02}", last_order=lapse90) for i in range(25))
        session.add_all(customer(f"w{i:02}", last_order=lapse180) for i in range(3))
        session.add(customer("bday", birthday=date(1990, 11, 24), timezone="Asia/Tokyo"))
    started: list[str] = []
    try:
        first = await run_sweep(env, worker, pages_per_run=2)

        assert first.counts["reactivation"].started == 25
        assert first.counts["win_back"].started == 3
        assert first.counts["birthday"].started == 1
        assert first.pages == 3 + 1 + 1 + 1  # 25 in pages of 10; then each kind's one page
        started = [f"reactivation/r{i:02}/{lapse90.date()}" for i in range(25)]
        reactivation = await env.client.get_workflow_handle(started[0]).describe()
        assert reactivation.status == WorkflowExecutionStatus.RUNNING
        assert reactivation.workflow_type == "ReactivationWorkflow"
        assert reactivation.task_queue == worker
        assert reactivation.typed_search_attributes.get(CUSTOMER_ID) == "r00"
        assert reactivation.typed_search_attributes.get(JOURNEY) == "reactivation"
        assert await reactivation.static_summary() == "Reactivation · customer r00"
        win_back = env.client.get_workflow_handle(f"win-back/w00/{lapse180.date()}")
        assert await win_back.result() == "one_time"
        assert await env.client.get_workflow_handle("birthday/bday/2026").result() == "2026-11-24"

        # Running (reactivations) or closed (win-backs, birthday): nothing starts again.
        again = await run_sweep(env, worker)

        assert again.counts["reactivation"].started == 0
        assert again.counts["reactivation"].already_started == 25
        assert again.counts["win_back"].already_started == 3
        assert again.counts["birthday"].already_started == 1
    finally:
        for workflow_id in started:
            with contextlib.suppress(RPCError):
                await env.client.get_workflow_handle(workflow_id).terminate("test over")


async def test_a_sweep_continues_as_new_carrying_its_cursor(
    env: WorkflowEnvironment, worker: str, sessions: sessionmaker[Session]
) -> None:
    lapse180 = at(D - timedelta(days=180), 9)
    with sessions.begin() as session:
        session.add_all(customer(f"can{i:02}", last_order=lapse180) for i in range(45))
    handle = await env.client.start_workflow(
        SweepWorkflow.run,
        SweepInput(day=D.isoformat(), pages_per_run=2),
        id=f"sweep/{D}/{uuid.uuid4()}",
        task_queue=worker,
    )

    result = await handle.result()

    assert result.counts["win_back"].started == 45
    first_run = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert (await first_run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    pages = 0
    async for event in first_run.fetch_history_events():
        attributes = event.activity_task_scheduled_event_attributes
        pages += attributes.activity_type.name == "sweep_page"
    assert pages == 2
