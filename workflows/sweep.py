"""The daily sweep: the journeys that start from time passing, not from an event.

A Temporal Schedule (``triggermail-daily-sweep``) starts it once a day; ``triggermail
sweep`` runs the same workflow on demand. It pages through the store, one activity call
per page, and each page starts its customers' journeys under deterministic IDs, so a
sweep run twice for a day starts nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
"""Set by a Schedule on the runs it starts: the day the run is for, however late it ran."""
KINDS = ("reactivation", "win_back", "birthday", "anniversary")
"""What a sweep looks for, in the order it pages through them."""
PAGES_PER_RUN = 50
"""Continue-as-new after this many pages: each page adds a handful of history events."""
NON_RETRYABLE = ["SweepError"]

PLAN_ACTIVITY = "sweep_plan"
PAGE_ACTIVITY = "sweep_page"
FINISH_ACTIVITY = "sweep_finish"


@dataclass
class JourneyCounts:
    """What one kind of journey came to in a sweep."""

    matched: int = 0
    """Customers who crossed the threshold (or have the occasion) on the covered days."""
    started: int = 0
    already_started: int = 0
    """Their journey was started before (an earlier run of the sweep): nothing done."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Not started, by reason: ``no_email``, ``no_consent``, ``suppressed:<reason>``,
    ``other_running`` (a journey of the other lapsed kind), ``day_over``."""

    def add(self, other: JourneyCounts) -> None:
        self.matched += other.matched
        self.started += other.started
        self.already_started += other.already_started
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count


@dataclass
class SweepPlan:
    """What a sweep found out once, before the first page."""

    day: str
    """The day swept (``YYYY-MM-DD``, UTC)."""
    first_day: str
    """The first day covered: the day after the last finished sweep, or ``day`` itself."""
    kinds: list[str]
    """The enabled kinds, in paging order."""
    vip_threshold: str | None = None
    """Least total spent of a VIP (a decimal), computed once per sweep."""
    win_back_after_s: float | None = None
    """The win-back threshold in seconds (the configured one, or the shop's cadence)."""
    average_gap_s: float | None = None
    """The shop's average time between a customer's orders, when the win-back uses it."""


@dataclass
class SweepCursor:
    """Where the next page starts: a kind and the last row of the previous page."""

    kind: str
    after_key: str | None = None
    """The previous page's last ``last_order_at`` (ISO), for the lapsed kinds."""
    after_id: str | None = None
    """The previous page's last customer id."""


@dataclass
class PageInput:
    plan: SweepPlan
    cursor: SweepCursor


@dataclass
class PageResult:
    kind: str
    counts: JourneyCounts
    next: SweepCursor | None
    """None: the sweep has read everything."""


@dataclass
class SweepInput:
    """Start (or continuation) of one day's sweep.

    The Schedule starts it empty: the day is the run's scheduled day (UTC).
    """

    day: str | None = None
    plan: SweepPlan | None = None
    cursor: SweepCursor | None = None
    counts: dict[str, JourneyCounts] = field(default_factory=dict)
    pages: int = 0
    pages_per_run: int = PAGES_PER_RUN
    """Continue-as-new after this many pages."""


@dataclass
class FinishInput:
    plan: SweepPlan
    counts: dict[str, JourneyCounts]


@dataclass
class SweepResult:
    day: str
    first_day: str
    counts: dict[str, JourneyCounts]
    pages: int


CALL_TIMEOUT = timedelta(minutes=5)
"""One page: a query, a few hundred journey starts."""
GIVE_UP_AFTER = timedelta(hours=12)
"""Retried for hours (a store or cluster outage), not forever: the next day's sweep covers
the days this one did not finish."""
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE,
)


@workflow.defn(name="SweepWorkflow")
class SweepWorkflow:
    """One day's sweep (ID: ``sweep/<day>`` from the command, ``triggermail-daily-sweep-…``
    from the Schedule).

    Plan (covered days, VIP threshold, win-back threshold) → one page after another
    (reactivation, win-back, birthdays, anniversaries; each page starts its journeys)
    → finish (the counts in ``sweep_runs``). Carries dates, cursors and counts only.

    Queries:
        ``progress() -> SweepInput``: the day, cursor and counts so far.
    """

    def __init__(self) -> None:
        self.state = SweepInput()

    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        self.state = input
        day = input.day or self._scheduled_day()
        plan = input.plan or await workflow.execute_activity(
            PLAN_ACTIVITY,
            day,
            result_type=SweepPlan,
            summary=f"plan {day}",
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=GIVE_UP_AFTER,
            retry_policy=RETRY,
        )
        cursor = input.cursor or (SweepCursor(plan.kinds[0]) if plan.kinds else None)
        counts = input.counts
        self.state = SweepInput(day, plan, cursor, counts, input.pages, input.pages_per_run)
        pages_this_run = 0
        while cursor is not None:
            page = await workflow.execute_activity(
                PAGE_ACTIVITY,
                PageInput(plan, cursor),
                result_type=PageResult,
                summary=f"{cursor.kind} after {cursor.after_id or 'start'}",
                start_to_close_timeout=CALL_TIMEOUT,
                schedule_to_close_timeout=GIVE_UP_AFTER,
                retry_policy=RETRY,
            )
            counts.setdefault(page.kind, JourneyCounts()).add(page.counts)
            cursor = page.next
            pages_this_run += 1
            self.state = SweepInput(
                day, plan, cursor, counts, self.state.pages + 1, input.pages_per_run
            )
            long = pages_this_run >= input.pages_per_run
            if cursor is not None and (long or workflow.info().is_continue_as_new_suggested()):
                workflow.continue_as_new(self.state)
        await workflow.execute_activity(
            FINISH_ACTIVITY,
            FinishInput(plan, counts),
            summary=f"record {day}",
            start_to_close_timeout=CALL_TIMEOUT,
            schedule_to_close_timeout=GIVE_UP_AFTER,
            retry_policy=RETRY,
        )
        return SweepResult(day, plan.first_day, counts, self.state.pages)

    @workflow.query
    def progress(self) -> SweepInput:
        return self.state

    @staticmethod
    def _scheduled_day() -> str:
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        moment = scheduled or workflow.now()
        return moment.astimezone(UTC).date().isoformat()


def day_of(moment: datetime) -> str:
    """The UTC day of ``moment`` as a sweep names it."""
    return moment.astimezone(UTC).date().isoformat()
