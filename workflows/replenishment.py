"""Replenishment: a product that runs out gets a reminder shortly before it does."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyExit, JourneyResult, ReplenishmentInput, Repurchase

ORDER_EXITS = frozenset({"order_refunded", "order_cancelled"})
"""Exits that end one order's cycle, not the customer's replenishment of the product."""
REORDER_AFTER_EXIT = "replenishment-reorder-after-cancel"
"""Patch: a cancel or refund followed by a newer order before the journey ended on it no longer
ends the newer order's cycle too (cancel-and-reorder). Asked only then, so other journeys record
no marker; journeys that ended so before it replay ending."""


@workflow.defn
class ReplenishmentWorkflow(Journey):
    """One customer's replenishment of one product (ID:
    ``replenishment/<customer id>/<product id or category:name>``).

    The first step is due at order time + the product's cycle - the lead time (a
    T-shirt's 180 days - 15 = 5.5 months); a repurchase before then starts the cycle
    over from the new order, and the e-mail shows what was bought last. A cancel or
    refund ends the cycle of its order only: a newer order (cancel-and-reorder, say to
    change size) goes on, even one that came before the journey could end.

    Signals:
        ``repurchased(Repurchase)``: bought again (also the start signal).
        ``exit(JourneyExit)``: the order it counts from refunded or cancelled, an
        unsubscribe, a cancel.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "replenishment"
    title = "Replenishment"

    def __init__(self) -> None:
        super().__init__()
        self.latest: Repurchase | None = None

    @workflow.signal
    def repurchased(self, purchase: Repurchase) -> None:
        # Events can arrive out of order; the latest order sets the cycle.
        if self.latest is None or purchase.at > self.latest.at:
            self.latest = purchase

    @workflow.signal
    def exit(self, signal: JourneyExit) -> None:
        # An order exit overtaken by a reorder ends nothing: the next exit that concerns the
        # newer order (its own cancel, an unsubscribe) takes its place.
        if self._reordered() and self.accepts(signal):
            self.exited = signal
        else:
            super().exit(signal)

    def accepts(self, signal: JourneyExit) -> bool:
        # A refund of an earlier order of the product does not undo the latest one.
        if signal.reason in ORDER_EXITS and self.latest is not None:
            return signal.ref == self.latest.order_id
        return True

    def _reordered(self) -> bool:
        """Whether the journey exited on an order's cancel or refund and a newer order of the
        product came after: the exit was accepted for the order then latest, so another one
        latest now is newer."""
        exited, latest = self.exited, self.latest
        return (
            exited is not None
            and exited.reason in ORDER_EXITS
            and latest is not None
            and exited.ref != latest.order_id
        )

    def _due(self) -> datetime:
        assert self.latest is not None
        return self.latest.due_at

    @workflow.run
    async def run(self, input: ReplenishmentInput) -> JourneyResult:
        if self.latest is None:
            self.latest = Repurchase(
                input.order_id,
                input.product_id,
                input.entered_at,
                input.entry_event_id,
                input.due_at,
            )
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        first = input.spec.steps[0]

        def first_due() -> datetime:
            return self._due() + timedelta(seconds=first.after_s)

        if not await self.wait_for(first, first_due, why="a repurchase", changed=self._due):
            if self._reordered() and workflow.patched(REORDER_AFTER_EXIT):
                self.count_from_latest(input)
            return self.conclude(None)
        # What the cycle counts from is fixed now: a later order of it ends this cycle.
        latest = self.latest
        assert latest is not None
        stop = await self.send_steps(
            input.spec.steps,
            latest.due_at,
            why="a repurchase",
            entry_event_id=latest.event_id,
            entered_at=latest.at,
            order_id=latest.order_id,
            product_ids=[latest.product_id],
            ends_on_purchase=False,
        )
        return self.end(stop or (self.exited.reason if self.exited else "completed"), input, latest)

    def end(self, reason: str, input: ReplenishmentInput, mailed: Repurchase) -> JourneyResult:
        """Finish, unless a newer order arrived meanwhile: its cycle then runs on
        (:meth:`count_from_latest`), unless an exit ended the journey, other than a cancel or
        refund of an order before it."""
        latest = self.latest
        if (
            latest is not None
            and latest.at > mailed.at
            and (
                self.exited is None or (self._reordered() and workflow.patched(REORDER_AFTER_EXIT))
            )
        ):
            self.count_from_latest(input)
        return self.finish(reason)

    def count_from_latest(self, input: ReplenishmentInput) -> NoReturn:
        """Start the latest order's cycle in a new run of the same ID (the signal-with-start
        that brought the order found this one running)."""
        latest = self.latest
        assert latest is not None
        workflow.continue_as_new(
            replace(
                input,
                product_id=latest.product_id,
                order_id=latest.order_id,
                entered_at=latest.at,
                entry_event_id=latest.event_id,
                due_at=latest.due_at,
            )
        )


JOURNEY = JourneyDef(
    workflow=ReplenishmentWorkflow,
    keyed_by="product",
    workflow_id=ids.replenishment_id,
    # A repurchase is its start signal too: the cycle starts over from that order.
    enters_on=("Order Completed",),
    exits_on=("Order Refunded", "Order Cancelled"),
    about="order",
    needs_products=True,
)
