"""A store of customers on either side of the sweep's thresholds, and Temporal faked at its
edge (the sweep's starts and describes), so the store logic runs on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.sweep import SweepActivities
from tests.sweep.stand_ins import StandInBirthday, StandInReactivation, StandInWinBack
from triggermail.journey_tables import Birthday, Reactivation, Step, WinBack
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Customer
from workflows.sweep import JourneyCounts, PageInput, SweepCursor, SweepPlan, SweepWorkflow


def journeys(**changes: Any) -> JourneysConfig:
    """The packaged journeys with the lapsed-customer ones on, whatever the TOML has."""
    base = load_journeys()
    lapsed = {
        "reactivation": Reactivation(
            steps=[
                Step(
                    name="still_with_us",
                    after=timedelta(hours=1),
                    template="reactivation/still_with_us",
                )
            ]
        ),
        "win_back": WinBack(
            steps=[
                Step(
                    name="offer", after=timedelta(hours=1), template="win_back/offer", phase="offer"
                ),
                Step(
                    name="value", after=timedelta(days=7), template="win_back/value", phase="value"
                ),
                Step(
                    name="farewell",
                    after=timedelta(days=7),
                    template="win_back/farewell",
                    phase="farewell",
                ),
            ]
        ),
        "birthday": Birthday(
            steps=[
                Step(name="birthday", after=timedelta(0), template="birthday/birthday"),
                Step(name="anniversary", after=timedelta(0), template="birthday/anniversary"),
            ]
        ),
    }
    return base.model_copy(update={**lapsed, **changes})


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def customer(
    customer_id: str,
    *,
    last_order: datetime | None = None,
    first_order: datetime | None = None,
    orders: int = 1,
    spent: str = "50",
    email: str | None = "",
    consent: bool = True,
    timezone: str | None = None,
    birthday: date | None = None,
) -> Customer:
    first = first_order or last_order
    return Customer(
        id=customer_id,
        email=f"{customer_id}@example.com" if email == "" else email,
        marketing_consent=consent,
        timezone=timezone,
        orders_count=orders if last_order else 0,
        total_spent=Decimal(spent) if last_order else Decimal(0),
        first_order_at=first,
        first_order_md=first.strftime("%m-%d") if first else None,
        last_order_at=last_order,
        birthday=birthday,
        birthday_md=birthday.strftime("%m-%d") if birthday else None,
    )


@dataclass
class Started:
    workflow: str
    input: Any
    options: dict[str, Any]


@dataclass
class FakeTemporal:
    """Temporal as the sweep sees it: starts that refuse a used ID, and describes."""

    started: dict[str, Started] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    """IDs of journeys running (a second start answers with the running one)."""

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **options: Any) -> Any:
        if id in self.running and id in self.started:
            return _Handle(self, id, started=False)
        if id in self.started:
            raise WorkflowAlreadyStartedError(id, workflow)
        self.started[id] = Started(workflow, arg, options)
        return _Handle(self, id, started=True)

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self, workflow_id, started=False)


class _Response:
    def __init__(self, started: bool) -> None:
        self.started = started


class _Described:
    def __init__(self, status: WorkflowExecutionStatus) -> None:
        self.status = status


class _Handle:
    def __init__(self, fake: FakeTemporal, workflow_id: str, *, started: bool) -> None:
        self.fake, self.id = fake, workflow_id
        self._start_workflow_response = _Response(started)

    async def describe(self, **_: Any) -> _Described:
        if self.id in self.fake.running:
            return _Described(WorkflowExecutionStatus.RUNNING)
        if self.id in self.fake.started:
            return _Described(WorkflowExecutionStatus.COMPLETED)
        raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")


def sweeper(
    sessions: sessionmaker[Session],
    config: JourneysConfig,
    temporal: FakeTemporal,
    now: datetime,
) -> SweepActivities:
    return SweepActivities(
        session_factory=sessions,
        journeys=config,
        client=cast(Client, temporal),
        task_queue="tq-sweep",
        clock=lambda: now,
    )


async def sweep(
    activities: SweepActivities, day: date
) -> tuple[SweepPlan, dict[str, JourneyCounts]]:
    """What the workflow does, page by page, without Temporal."""
    from workflows.sweep import FinishInput

    plan = activities.store.plan(day.isoformat())
    counts: dict[str, JourneyCounts] = {}
    cursor: SweepCursor | None = SweepCursor(plan.kinds[0])
    while cursor is not None:
        page = await activities.page(PageInput(plan, cursor))
        counts.setdefault(page.kind, JourneyCounts()).add(page.counts)
        cursor = page.next
    activities.store.finish(FinishInput(plan, counts))
    return plan, counts


@asynccontextmanager
async def sweep_worker(
    client: Client, sessions: sessionmaker[Session], config: JourneysConfig, **activities: Any
) -> AsyncIterator[str]:
    """A worker running the sweep and stand-ins for the journeys it starts, on a fresh task
    queue (yielded); ``activities``: more of :class:`SweepActivities`' arguments (clock)."""
    task_queue = f"tq-{uuid.uuid4()}"
    sweep_activities = SweepActivities(
        session_factory=sessions,
        journeys=config,
        client=client,
        task_queue=task_queue,
        **activities,
    )
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[SweepWorkflow, StandInReactivation, StandInWinBack, StandInBirthday],
            activities=sweep_activities.activities(),
            activity_executor=executor,
        ):
            yield task_queue
