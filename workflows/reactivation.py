"""Reactivation: "still with us?" to a customer who stopped buying — a code, or a question."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyResult, LapsedInput

WAITING_FOR = "a purchase"


@workflow.defn
class ReactivationWorkflow(Journey):
    """One lapse's reactivation (ID: ``reactivation/<customer id>/<last order day>``,
    started once by the daily sweep).

    Steps come from the journeys TOML, snapshotted at entry (by default one e-mail when
    the sweep finds the customer): with ``[reactivation] ask = "promo"`` a personal code
    that expires, at the customer's segment's offer level; with ``"survey"`` one question,
    why they stopped, answered by a signed link per answer that records it on the
    customer card. Any order ends it.

    Signals:
        ``exit(JourneyExit)``: a purchase, an unsubscribe or an operator's cancel — ends it.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "reactivation"
    title = "Reactivation"

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
        return self.conclude(stop)


JOURNEY = JourneyDef(
    workflow=ReactivationWorkflow,
    keyed_by="lapse",
    workflow_id=ids.reactivation_id,
    enters_on=("sweep",),
    exits_on=("Order Completed",),
    about="lapse",
    sweep_kinds={"reactivation": ids.reactivation_id},
)
