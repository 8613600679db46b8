"""Abandoned cart: a cart left behind gets a reminder, then a time-limited incentive."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import (
        AbandonedCartInput,
        CartActivity,
        JourneyResult,
    )


@workflow.defn
class AbandonedCartWorkflow(Journey):
    """One customer's abandoned-cart journey (ID: ``abandoned-cart/<customer id>``).

    Steps come from the journeys TOML, snapshotted at entry (by default: reminder
    30 min after the last cart change, incentive with a coupon 24 h later). The
    first step's quiet window starts over on every cart change before it.

    Signals:
        ``cart_activity(CartActivity)``: the cart changed (also the start signal).
        ``exit(JourneyExit)``: purchase, emptied cart, unsubscribe or cancel — ends it now.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "abandoned_cart"
    title = "Abandoned cart"

    def __init__(self) -> None:
        super().__init__()
        self.cart_id = ""
        self.last_activity: datetime | None = None

    @workflow.signal
    def cart_activity(self, activity: CartActivity) -> None:
        # Events can arrive out of order; the latest change decides the quiet window.
        if self.last_activity is None or activity.at >= self.last_activity:
            self.last_activity = activity.at
            self.cart_id = activity.cart_id

    def _last_change(self) -> datetime | None:
        return self.last_activity

    def _quiet_since(self) -> datetime:
        assert self.last_activity is not None
        return self.last_activity

    @workflow.run
    async def run(self, input: AbandonedCartInput) -> JourneyResult:
        if not self.cart_id:
            self.cart_id = input.cart_id
        if self.last_activity is None:
            self.last_activity = input.entered_at
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        # Counted from the last cart change, which may move while we wait.
        return await self.send_after_quiet(
            input.spec.steps,
            self._quiet_since,
            why="a purchase",
            changed=self._last_change,
            send=lambda step: self.send_step(
                step,
                entry_event_id=input.entry_event_id,
                entered_at=input.entered_at,
                cart_id=self.cart_id,
            ),
        )


JOURNEY = JourneyDef(
    workflow=AbandonedCartWorkflow,
    keyed_by="customer",
    workflow_id=ids.abandoned_cart_id,
    # identify: a visitor who filled a cart and then logged in.
    enters_on=("Product Added", "Product Removed", "Checkout Started", "identify"),
    exits_on=("Order Completed", "Product Removed"),
    about="cart",
    report_recovery=True,
)
