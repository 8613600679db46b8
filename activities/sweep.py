"""The daily sweep's activities: its plan, its pages' journeys started, its record.

The store's side of each (the queries, the entries, the day's record) is
:class:`activities.sweep_store.SweepStore`, run in a thread; here is the Temporal side: a
page's candidates whose other lapsed journey already runs are left out (a describe each),
and the rest are started, ``CONCURRENT_STARTS`` at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.sweep_store import JOURNEY_OF, Candidate, SweepStore
from triggermail.journeys import JourneysConfig
from triggermail.search_attributes import journey_attributes
from triggermail.store import utcnow
from workflows import registry
from workflows.sweep import (
    FINISH_ACTIVITY,
    PAGE_ACTIVITY,
    PLAN_ACTIVITY,
    FinishInput,
    PageInput,
    PageResult,
    SweepPlan,
)

RPC_TIMEOUT = timedelta(seconds=10)
CONCURRENT_STARTS = 32
"""Journey starts in flight at once within a page."""


def summary(kind: str) -> str:
    """What the Temporal UI shows of a swept journey: its title, or the kind's own name where
    one journey has several (a birthday, an anniversary)."""
    journey = registry.SWEPT[kind]
    return journey.title if len(journey.sweep_kinds) == 1 else kind.replace("_", " ").capitalize()


class SweepActivities:
    """The sweep's plan, pages and record; ``worker.py`` hands in the store, the journeys
    config, the Temporal client and the clock."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        journeys: JourneysConfig,
        client: Client,
        task_queue: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = SweepStore(session_factory=session_factory, journeys=journeys, clock=clock)
        self.client = client
        self.task_queue = task_queue

    def activities(self) -> list[Callable[..., Any]]:
        return [self.plan, self.page, self.finish]

    # -- activities ----------------------------------------------------------------------

    @activity.defn(name=PLAN_ACTIVITY)
    async def plan(self, day: str) -> SweepPlan:
        """Which days the sweep covers, and what it computes once: the VIP threshold, the
        win-back threshold. Marks the day's sweep as begun.

        Raises:
            SweepError: ``day`` is not a day.
        """
        return await asyncio.to_thread(self.store.plan, day)

    @activity.defn(name=PAGE_ACTIVITY)
    async def page(self, input: PageInput) -> PageResult:
        """One page: read the matches, skip who must not get the journey, start the rest."""
        page = await asyncio.to_thread(self.store.read_page, input.plan, input.cursor)
        running = await self._others_running(page.candidates)
        counts = page.counts
        candidates = []
        for candidate in page.candidates:
            if candidate.workflow_id in running:
                counts.skipped["other_running"] = counts.skipped.get("other_running", 0) + 1
            else:
                candidates.append(candidate)
        candidates = await asyncio.to_thread(self.store.record_entries, input.plan, candidates)
        outcomes = await self._start_all(candidates)
        counts.started += outcomes.count("started")
        counts.already_started += outcomes.count("already_started")
        return PageResult(kind=page.kind, counts=counts, next=page.next)

    @activity.defn(name=FINISH_ACTIVITY)
    async def finish(self, input: FinishInput) -> None:
        """Record the day's sweep as finished, with its counts: the next covers from here."""
        await asyncio.to_thread(self.store.finish, input)

    # -- Temporal ------------------------------------------------------------------------

    async def _others_running(self, candidates: list[Candidate]) -> set[str]:
        """The candidates whose other lapsed journey runs for the same lapse."""
        checks = [c for c in candidates if c.other_ids]
        limit = asyncio.Semaphore(CONCURRENT_STARTS)

        async def running(workflow_id: str) -> bool:
            async with limit:
                try:
                    described = await self.client.get_workflow_handle(workflow_id).describe(
                        rpc_timeout=RPC_TIMEOUT
                    )
                except RPCError as err:
                    if err.status == RPCStatusCode.NOT_FOUND:
                        return False
                    raise
            return described.status == WorkflowExecutionStatus.RUNNING

        async def any_running(candidate: Candidate) -> bool:
            return any([await running(other) for other in candidate.other_ids])

        results = await asyncio.gather(*(any_running(c) for c in checks))
        return {c.workflow_id for c, busy in zip(checks, results, strict=True) if busy}

    async def _start_all(self, candidates: list[Candidate]) -> list[str]:
        limit = asyncio.Semaphore(CONCURRENT_STARTS)

        async def start(candidate: Candidate) -> str:
            async with limit:
                return await self.start(candidate)

        return list(await asyncio.gather(*(start(c) for c in candidates)))

    async def start(self, candidate: Candidate) -> str:
        """Start one journey: ``started``, or ``already_started`` when an earlier sweep did."""
        try:
            handle = await self.client.start_workflow(
                registry.SWEPT[candidate.kind].workflow_type,
                candidate.input,
                id=candidate.workflow_id,
                task_queue=self.task_queue,
                # Once per lapse, per year: a closed journey's ID is never reused, and a
                # running one is left as it is.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=journey_attributes(
                    JOURNEY_OF[candidate.kind], candidate.customer_id
                ),
                static_summary=f"{summary(candidate.kind)} · customer {candidate.customer_id}",
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return "already_started"
        # USE_EXISTING answers a running journey with its handle; the response says which.
        response = getattr(handle, "_start_workflow_response", None)
        if response is not None and not getattr(response, "started", True):
            return "already_started"
        return "started"
