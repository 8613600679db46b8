"""Birthday and anniversary: a personal greeting on the customer's day, at a local hour."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from triggermail import ids
    from workflows.definition import JourneyDef
    from workflows.journey import Journey
    from workflows.types import JourneyResult, OccasionInput

WAITING_FOR = "an unsubscribe"


@workflow.defn
class BirthdayWorkflow(Journey):
    """One customer's birthday greeting or first-order anniversary thank-you of one year
    (IDs: ``birthday/<customer id>/<year>``, ``anniversary/<customer id>/<year>``; the
    daily sweep starts each once ever, so a customer gets one of each per year).

    The e-mail is the ``[birthday]`` step named like the occasion, due at ``send_at``
    (the configured local hour on the day, computed by the sweep) plus the step's
    ``after``: a greeting with an optional gift code, or "N years with us". It belongs to
    its day: held back by the frequency cap past the end of that day in the customer's
    timezone, it is skipped (``too_late``) rather than sent late. A purchase does not end
    it.

    Signals:
        ``exit(JourneyExit)``: unsubscribe or an operator's cancel — ends it now.
    Queries:
        ``status() -> JourneyStatus``.
    """

    journey_name = "birthday"
    title = "Birthday & anniversary"

    @workflow.run
    async def run(self, input: OccasionInput) -> JourneyResult:
        self.begin(
            customer_id=input.customer_id, entered_at=workflow.now(), timezone=input.timezone
        )
        step = next((s for s in input.spec.steps if s.name == input.occasion), None)
        if step is None:
            return self.finish("not_configured")  # the shop sends only the other occasion
        stop = await self.send_steps(
            [step],
            input.send_at,
            why=WAITING_FOR,
            entry_event_id=input.day,
            entered_at=input.send_at,
            ends_on_purchase=False,
            send_on=input.day,
        )
        return self.conclude(stop)


JOURNEY = JourneyDef(
    workflow=BirthdayWorkflow,
    keyed_by="occasion",
    workflow_id=ids.birthday_id,
    enters_on=("sweep",),
    exits_on=(),
    about="occasion",
    sweep_kinds={"birthday": ids.birthday_id, "anniversary": ids.anniversary_id},
)
