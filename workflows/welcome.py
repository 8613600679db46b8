"""Welcome: a new customer gets how to use the shop now, then follow-ups a few days apart."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyResult, WelcomeInput


@workflow.defn
class WelcomeWorkflow(Journey):
    """One customer's welcome (ID: ``welcome/<customer id>``, used once per customer ever).

    Steps come from the journeys TOML, snapshotted at entry (by default: welcome at
    once, follow-ups 1 and 3 days later). A purchase does not end it: a welcome is
    not about one.

    Signals:
        ``exit(JourneyExit)``: unsubscribe or an operator's cancel — ends it now.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "welcome"
    title = "Welcome"

    @workflow.run
    async def run(self, input: WelcomeInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        stop = await self.send_steps(
            input.spec.steps,
            input.entered_at,
            why="an unsubscribe",
            entry_event_id=input.entry_event_id,
            entered_at=input.entered_at,
            ends_on_purchase=False,
        )
        return self.conclude(stop)


JOURNEY = JourneyDef(
    workflow=WelcomeWorkflow,
    keyed_by="customer",
    workflow_id=ids.welcome_id,
    enters_on=("Signed Up", "identify"),
    exits_on=(),
    about="customer",
)
