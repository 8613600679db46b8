"""Reactivation: "still with us?" to a customer who stopped buying — a code, or a question."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.journey import Journey
    from workflows.types import JourneyResult, LapsedInput, SendEmailInput, SendResult

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

    def __init__(self) -> None:
        super().__init__()
        self.segment: str | None = None

    async def send(self, request: SendEmailInput) -> SendResult | None:
        # The segment picks the offer the e-mail makes (activities.lapsed).
        return await super().send(replace(request, segment=self.segment))

    @workflow.run
    async def run(self, input: LapsedInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=input.entered_at, timezone=input.timezone
        )
        self.segment = input.segment
        due = input.entered_at
        for step in input.spec.steps:
            due += timedelta(seconds=step.after_s)
            if not await self.wait_for(step, due, why=WAITING_FOR):
                break
            stop = await self.send_step(
                step, entry_event_id=input.entry_key, entered_at=input.entered_at
            )
            if stop is not None:
                return self.finish(stop)
        return self.finish(self.exited.reason if self.exited else "completed")
