"""Win-back: a lapsed customer gets offers, then what sets the shop apart, then a farewell;
no reaction at all, and they are sunset."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import STOP_REASONS, Journey
    from workflows.types import (
        SUNSET_ACTIVITY,
        SUNSET_AFTER_ACTIVITY,
        JourneyResult,
        LapsedInput,
        StepSpec,
        SunsetInput,
        SunsetResult,
    )

WAITING_FOR = "a purchase or an unsubscribe"
SUNSET_STEP = StepSpec(name="sunset", after_s=0, template="")
"""Not an e-mail: where the journey stands while it waits to sunset a silent customer."""
LAPSED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)
)


@workflow.defn
class WinBackWorkflow(Journey):
    """One lapse's win-back (ID: ``win-back/<customer id>/<last order day>``, started once by
    the daily sweep).

    Steps come from the journeys TOML, snapshotted at entry, in phases: **offer** (by
    default free shipping, 25 % off a week later, both a week after that; the customer's
    segment sets the offer level at send time), **value** (the shop's value points),
    **farewell** (regret and a one-click opt-out). When the last farewell has gone, the
    journey waits ``[win_back] sunset_after``; a customer who by then never opened or
    clicked any of its e-mails, nor ordered, is sunset: suppressed with reason ``sunset``,
    so no marketing journey mails them again.

    Signals:
        ``exit(JourneyExit)``: a purchase, an unsubscribe or an operator's cancel — ends it.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "win_back"
    title = "Win-back"

    @workflow.run
    async def run(self, input: LapsedInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        stop = await self.send_steps(
            input.spec.steps,
            input.entered_at,
            why=WAITING_FOR,
            entry_event_id=input.entry_key,
            entered_at=input.entered_at,
            # The segment picks the offer the e-mail makes (activities.lapsed).
            segment=input.segment,
        )
        if stop is not None:
            return self.finish(stop)
        farewell = next((e for e in reversed(self.emails) if e.status in ("sent", "unknown")), None)
        if farewell is None or input.spec.steps[-1].name != farewell.step:
            return self.finish("completed")  # no farewell went out: nobody to say goodbye to
        # Pinned at entry since December 2026; a journey entered before asks the config
        # (its history has the activity: the branch follows its input, so replay agrees).
        grace = input.spec.sunset_after_s
        if grace is None:
            grace = await workflow.execute_activity(
                SUNSET_AFTER_ACTIVITY,
                result_type=float,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=LAPSED_RETRY,
            )
        sunset_at = farewell.at + timedelta(seconds=grace)
        if not await self.wait_for(SUNSET_STEP, sunset_at, why="an open, a click or an order"):
            return self.finish(self.exited.reason if self.exited else "completed")
        result = await workflow.execute_activity(
            SUNSET_ACTIVITY,
            SunsetInput(
                customer_id=input.customer_id,
                journey=self.journey_name,
                workflow_id=workflow.info().workflow_id,
                entered_at=input.entered_at,
                send_id=farewell.send_id,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=LAPSED_RETRY,
            summary="sunset unless the customer reacted",
            result_type=SunsetResult,
        )
        if result.sunset:
            return self.finish("sunset")
        # Suppressed meanwhile (a complaint, an unsubscribe the signal never brought): that
        # is the end; otherwise how the customer showed they still read us.
        stop = result.reason if result.reason in STOP_REASONS else f"reacted_{result.reason}"
        return self.finish(stop)


JOURNEY = JourneyDef(
    workflow=WinBackWorkflow,
    keyed_by="lapse",
    workflow_id=ids.win_back_id,
    enters_on=("sweep",),
    exits_on=("Order Completed",),
    about="lapse",
    sweep_kinds={"win_back": ids.win_back_id},
)
