"""Review request: once an order has arrived, ask for reviews of its products; remind once."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyResult, OrderDelivered, ReviewRequestInput, StepSpec

DELIVERY_WAIT = timedelta(days=60)
"""An order that never reports delivery is not waited for beyond this."""


@workflow.defn
class ReviewRequestWorkflow(Journey):
    """One order's review request (ID: ``review-request/<order id>``, used once).

    The first step counts from delivery: the ``delivered`` signal (Order Delivered), or,
    for shops that send none, the expected delivery time given at entry; a delivery
    reported later moves it. Steps come from the journeys TOML (by default: ask 3 days
    after delivery, remind 4 days after that).

    Signals:
        ``delivered(OrderDelivered)``: the order arrived (also the start signal).
        ``exit(JourneyExit)``: every product reviewed, the order refunded or cancelled,
        an unsubscribe, a cancel.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "review_request"
    title = "Review request"

    def __init__(self) -> None:
        super().__init__()
        self.delivered_at: datetime | None = None

    @workflow.signal
    def delivered(self, delivery: OrderDelivered) -> None:
        # The first report wins: a carrier's repeated scan is not a second delivery.
        if self.delivered_at is None:
            self.delivered_at = delivery.at

    def _delivery(self) -> datetime | None:
        return self.delivered_at

    @workflow.run
    async def run(self, input: ReviewRequestInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        first = input.spec.steps[0]
        if self.delivered_at is None and input.expected_delivery_at is None:
            self.waiting_for = "the delivery"
            workflow.set_current_details(self._details())
            try:
                await workflow.wait_condition(
                    lambda: self.delivered_at is not None or self.exited is not None,
                    timeout=DELIVERY_WAIT,
                    timeout_summary="wait for the delivery",
                )
            except TimeoutError:
                return self.finish("not_delivered")
            if self.exited is not None:
                return self.finish(self.exited.reason)

        def after_delivery(step: StepSpec = first) -> datetime:
            arrived = self.delivered_at or input.expected_delivery_at
            assert arrived is not None
            return arrived + timedelta(seconds=step.after_s)

        if not await self.wait_for(first, after_delivery, why="reviews", changed=self._delivery):
            return self.conclude(None)
        # The ask is due now; the reminder counts from it, whatever delivery is reported later.
        stop = await self.send_steps(
            input.spec.steps,
            after_delivery(first) - timedelta(seconds=first.after_s),
            why="reviews",
            entry_event_id=input.entry_event_id,
            entered_at=input.entered_at,
            order_id=input.order_id,
            ends_on_purchase=False,
        )
        return self.conclude(stop)


JOURNEY = JourneyDef(
    workflow=ReviewRequestWorkflow,
    keyed_by="order",
    workflow_id=ids.review_request_id,
    enters_on=("Order Completed", "Order Delivered"),
    exits_on=("Product Reviewed", "Order Refunded", "Order Cancelled"),
    about="order",
)
