"""A second journey type for the frequency-cap tests: the cart journey under another journey's
name (so another priority), registered only on the tests' own worker, so two journeys of
one customer compete for the cap at chosen moments."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.abandoned_cart import AbandonedCartWorkflow
    from workflows.types import AbandonedCartInput, JourneyResult


@workflow.defn(name="RivalJourneyForTests")
class RivalJourney(AbandonedCartWorkflow):
    journey_name = "welcome"
    title = "Rival (tests)"

    @workflow.run
    async def run(self, input: AbandonedCartInput) -> JourneyResult:
        return await super().run(input)
