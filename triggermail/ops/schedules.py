"""The Temporal Schedules triggermail keeps: the daily sweep and the hourly experiments.

``triggermail schedules apply`` (and ``triggermail dev``) create them, or bring them up to
date while keeping an operator's pause and note.
"""

from __future__ import annotations

import dataclasses
from datetime import time, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from workflows.experiments import ExperimentsInput
from workflows.sweep import SweepInput

SWEEP_SCHEDULE_ID = "triggermail-daily-sweep"
"""The Schedule's ID; each run it starts is ``triggermail-daily-sweep-<scheduled time>``."""
SWEEP_CATCH_UP = timedelta(hours=12)
"""A run the cluster missed (down at the time) still starts when it is back within this;
later, the next day's sweep covers the missed day."""
EXPERIMENTS_SCHEDULE_ID = "triggermail-experiments"
"""The experiments' Schedule; each run is ``triggermail-experiments-<scheduled time>``."""
EXPERIMENTS_EVERY = timedelta(hours=1)
EXPERIMENTS_CATCH_UP = timedelta(minutes=30)
"""A missed run starts when the cluster is back within this; later, the next hour's does
the same work."""


def sweep_schedule(*, at: time, task_queue: str) -> Schedule:
    """The daily sweep's Schedule: ``SweepWorkflow`` every day at ``at`` UTC, never two at
    once (a run still paging when the next is due makes that one skip)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "SweepWorkflow",
            SweepInput(),
            id=SWEEP_SCHEDULE_ID,
            task_queue=task_queue,
            static_summary="Daily sweep: lapsed customers, birthdays, anniversaries",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(at.hour)],
                    minute=[ScheduleRange(at.minute)],
                    second=[ScheduleRange(0)],
                    comment="daily at [sweep] at",
                )
            ],
            time_zone_name="UTC",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=SWEEP_CATCH_UP),
        state=ScheduleState(note="triggermail: starts the journeys of time passing"),
    )


async def apply_sweep_schedule(client: Client, *, at: time, task_queue: str) -> str:
    """Create the daily sweep's Schedule, or bring an existing one up to date (its paused
    state and note are an operator's: they are kept). Returns ``created`` or ``updated``."""
    return await _apply_schedule(
        client, SWEEP_SCHEDULE_ID, sweep_schedule(at=at, task_queue=task_queue)
    )


def experiments_schedule(*, task_queue: str) -> Schedule:
    """The experiments' Schedule: ``ExperimentsWorkflow`` every hour, never two at once."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "ExperimentsWorkflow",
            ExperimentsInput(),
            id=EXPERIMENTS_SCHEDULE_ID,
            task_queue=task_queue,
            static_summary="Experiments: figures and automatic winners",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=EXPERIMENTS_EVERY)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=EXPERIMENTS_CATCH_UP
        ),
        state=ScheduleState(note="triggermail: decides the A/B experiments' automatic winners"),
    )


async def apply_experiments_schedule(client: Client, *, task_queue: str) -> str:
    """Create or update the experiments' Schedule, as :func:`apply_sweep_schedule` does."""
    return await _apply_schedule(
        client, EXPERIMENTS_SCHEDULE_ID, experiments_schedule(task_queue=task_queue)
    )


async def _apply_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(
            schedule=dataclasses.replace(schedule, state=current.description.schedule.state)
        )

    await client.get_schedule_handle(schedule_id).update(update)
    return "updated"
