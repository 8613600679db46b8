"""A second journey type for the frequency-cap tests: only one journey exists in production so
far, and competing for the cap needs two. It is the cart journey under another name (so
another priority), registered only on the tests' own worker."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.abandoned_cart import AbandonedCartWorkflow
    from workflows.types import AbandonedCartInput, JourneyResult


@workflow.defn(name="RivalJourneyForTests")
class RivalJourney(AbandonedCartWorkflow):
    journey_name = "browse_abandonment"
    title = "Rival (tests)"

    @workflow.run
    async def run(self, input: AbandonedCartInput) -> JourneyResult:
        return await super().run(input)
