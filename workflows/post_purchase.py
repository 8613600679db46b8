"""Post-purchase: every order gets a thank-you, then products that go with it."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyResult, PostPurchaseInput


@workflow.defn
class PostPurchaseWorkflow(Journey):
    """One order's post-purchase journey (ID: ``post-purchase/<order id>``, used once).

    Steps come from the journeys TOML, snapshotted at entry (by default: a thank-you at
    once, complementary products 3 days later). Later orders do not end it: they are
    what it hopes for.

    Signals:
        ``exit(JourneyExit)``: the order refunded or cancelled, an unsubscribe, a cancel.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "post_purchase"
    title = "Post-purchase"

    @workflow.run
    async def run(self, input: PostPurchaseInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        stop = await self.send_steps(
            input.spec.steps,
            input.entered_at,
            why="a refund or cancellation",
            entry_event_id=input.entry_event_id,
            entered_at=input.entered_at,
            order_id=input.order_id,
            ends_on_purchase=False,
        )
        return self.conclude(stop)


JOURNEY = JourneyDef(
    workflow=PostPurchaseWorkflow,
    keyed_by="order",
    workflow_id=ids.post_purchase_id,
    enters_on=("Order Completed",),
    exits_on=("Order Refunded", "Order Cancelled"),
    about="order",
)
