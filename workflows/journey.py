"""The steps every journey shares: enter, wait (raced against an exit), guard-and-send, end.

A journey subclasses :class:`Journey` and reads like its row in PRODUCT.md's table:
``self.begin(...)``, then ``await self.wait_for(...)`` and ``await self.send(...)``
until the steps run out or a signal ends it, then ``return self.finish(...)``.
Everything operators see — search attributes, the workflow's current details, the
``status`` query, metrics — is kept here, once for every journey.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # Passed through so their datetime hints are the real datetime class: the sandbox's
    # restricted copy would not decode as one.
    from triggermail.durations import format_duration
    from triggermail.ids import email_task_queue
    from triggermail.localtime import utc_and_local
    from triggermail.search_attributes import JOURNEY_STEP, NEXT_SEND_AT
    from workflows.types import (
        SEND_EMAIL_ACTIVITY,
        JourneyExit,
        JourneyResult,
        JourneyStatus,
        SendEmailInput,
        SendResult,
        SentEmail,
        StepSpec,
    )

SEND_TIMEOUT = timedelta(seconds=60)
"""One attempt: render, one provider call, ledger updates."""
SEND_DEADLINE = timedelta(hours=6)
"""After this an e-mail is stale: a cart reminder a day late does more harm than good."""
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["TemplateError", "InvalidSendInput"],
)
STOP_REASONS = frozenset(
    {
        "converted",
        "cart_emptied",
        "no_consent",
        "no_email",
        "unknown_customer",
        "unsubscribed",
        "bounced",
        "dropped",
        "spamreport",
        "sunset",
        "carted",
        "order_refunded",
        "order_cancelled",
        "reviewed",
        "repurchased",
        "nothing_to_show",
        "too_late",
        "not_their_day",
        "holdout",
    }
)
"""Guard outcomes after which no later step of the journey can be right either."""
CONVERSIONS = frozenset({"purchase", "converted"})
SINCE_2026_11 = "journeys-2026-11"
"""The patch every journey started since November 2026 records, once, at entry. It stands for
the three before it (search attributes, deferral timers, the send queue), each a marker and
an upsert of ``TemporalChangeVersion`` in the history: one instead of three saves every
journey four events and two visibility writes, and keeps both out of the send's task."""
HELD_FOR = {"frequency_cap": "the frequency cap", "quiet_hours": "quiet hours to end"}
"""What a deferred send waits for, as operators read it in timer summaries and details."""


class Journey:
    """Shared state and steps of a journey workflow.

    Signals: ``exit(JourneyExit)`` ends the journey at once (purchase, unsubscribe,
    an operator's cancel…).
    Queries: ``status() -> JourneyStatus``.
    """

    journey_name: str = ""
    title: str = ""

    def __init__(self) -> None:
        self.customer_id = ""
        self.timezone: str | None = None
        self.entered_at: datetime | None = None
        self.exited: JourneyExit | None = None
        self.emails: list[SentEmail] = []
        self.next_step: str | None = None
        self.next_send_at: datetime | None = None
        self.waiting_for: str | None = None
        self.state = "waiting"
        self.exit_reason: str | None = None
        self._searchable = False
        self._since_2026_11 = False
        self._published: tuple[str, datetime | None] | None = None

    @workflow.signal
    def exit(self, signal: JourneyExit) -> None:
        # The first reason wins: a purchase after an unsubscribe changes nothing.
        if self.exited is None and self.accepts(signal):
            self.exited = signal

    def accepts(self, signal: JourneyExit) -> bool:
        """Whether an exit concerns this journey; one keyed wider than an order overrides it."""
        return True

    @workflow.query
    def status(self) -> JourneyStatus:
        return JourneyStatus(
            journey=self.journey_name,
            customer_id=self.customer_id,
            state=self.state,
            next_step=self.next_step,
            next_send_at=self.next_send_at,
            sent=self.sent,
            exit_reason=self.exit_reason or (self.exited.reason if self.exited else None),
            waiting_for=self.waiting_for,
            entered_at=self.entered_at,
            timezone=self.timezone,
            next_send_local=(
                utc_and_local(self.next_send_at, self.timezone) if self.next_send_at else None
            ),
            emails=list(self.emails),
            exit_note=self.exited.note if self.exited else None,
        )

    @property
    def sent(self) -> list[str]:
        # "unknown": the provider may have it; it counts as sent so nothing repeats it.
        return [e.step for e in self.emails if e.status in ("sent", "unknown")]

    def begin(self, *, customer_id: str, entered_at: datetime, timezone: str | None) -> None:
        self.customer_id, self.entered_at, self.timezone = customer_id, entered_at, timezone
        self._since_2026_11 = workflow.patched(SINCE_2026_11)
        # Journeys started before they kept search attributes up to date must replay
        # without those upserts.
        self._searchable = self._since_2026_11 or workflow.patched("journey-search-attributes")
        self._count("triggermail_journeys_entered", "Journeys entered")
        # Search attributes wait for the first wait_for, which knows the step and its time.
        workflow.set_current_details(self._details())

    def finish(self, reason: str) -> JourneyResult:
        """End the journey: record why, for the UI, the metrics and the result."""
        self.state, self.exit_reason = "ended", reason
        self.next_step = self.next_send_at = self.waiting_for = None
        self._count("triggermail_journeys_ended", "Journeys ended", reason=reason)
        if reason in CONVERSIONS:
            self._count("triggermail_journeys_converted", "Journeys ended by a purchase")
        self._publish()
        return JourneyResult(exit_reason=reason, sent=self.sent)

    async def wait_for(
        self,
        step: StepSpec,
        due: datetime | Callable[[], datetime],
        *,
        why: str,
        changed: Callable[[], object] | None = None,
    ) -> bool:
        """Sleep until ``due``; True when it is time to send, False once the journey exited.

        ``due`` may be a function of state that ``changed`` returns (a cart change
        restarts the quiet window): when that state changes during the wait, the
        wait starts over with the new due time.
        """
        while self.exited is None:
            when = due() if callable(due) else due
            remaining = when - workflow.now()
            if remaining <= timedelta(0):
                return True
            self.state, self.next_step, self.next_send_at = "waiting", step.name, when
            self.waiting_for = why
            self._publish()

            def exited_or_moved(seen: object = changed() if changed else None) -> bool:
                moved = changed is not None and changed() != seen
                return self.exited is not None or moved

            summary = f"wait {format_duration(remaining)} for {why} before {step.name}"
            try:
                await workflow.wait_condition(
                    exited_or_moved, timeout=remaining, timeout_summary=summary
                )
            except TimeoutError:
                return self.exited is None
        return False

    async def send(self, request: SendEmailInput) -> SendResult | None:
        """Run the guarded send activity; None when it failed for good or the journey exited.

        The activity may answer ``deferred`` (frequency cap, quiet hours): the journey then
        waits on a durable timer, still raced against its exit, and asks again.
        """
        # Journeys that sent before guardrails existed must replay without the deferral
        # timers, and their recorded sends were never deferred.
        if self._since_2026_11 or workflow.patched("send-deferral"):
            request = replace(request, may_defer=True)
        while True:
            result = await self._send_once(request)
            if result is None or result.status != "deferred" or result.not_before is None:
                return result
            why = HELD_FOR.get(result.reason or "", result.reason or "a guardrail")
            if not await self.wait_for(request.step, result.not_before, why=why):
                return None

    async def _send_once(self, request: SendEmailInput) -> SendResult | None:
        self.state, self.waiting_for = "sending", None
        self._publish()
        # Sends moved to their own rate-limited queue; journeys that already scheduled one
        # on the journeys' queue keep scheduling there, as their histories say.
        queue = (
            email_task_queue(workflow.info().task_queue)
            if self._since_2026_11 or workflow.patched("email-task-queue")
            else None
        )
        try:
            result = await workflow.execute_activity(
                SEND_EMAIL_ACTIVITY,
                request,
                result_type=SendResult,
                task_queue=queue,
                start_to_close_timeout=SEND_TIMEOUT,
                schedule_to_close_timeout=SEND_DEADLINE,
                retry_policy=SEND_RETRY,
                summary=f"send {request.step.name}",
            )
        except ActivityError as err:
            workflow.logger.error("step %s not sent: %s", request.step.name, err.cause or err)
            self.emails.append(SentEmail(request.step.name, "error", "", workflow.now()))
            return None
        finally:
            self.state, self.next_step, self.next_send_at = "waiting", None, None
        if result.status == "deferred":
            return result
        self.emails.append(
            SentEmail(request.step.name, result.status, result.send_id, workflow.now())
        )
        return result

    async def send_step(
        self,
        step: StepSpec,
        *,
        entry_event_id: str,
        entered_at: datetime,
        cart_id: str | None = None,
        order_id: str | None = None,
        product_ids: list[str] | None = None,
        ends_on_purchase: bool = True,
        segment: str | None = None,
        send_on: str | None = None,
    ) -> str | None:
        """Send a step's e-mail; the reason the journey must end now, or None to go on."""
        result = await self.send(
            SendEmailInput(
                idempotency_key=self.send_key(entry_event_id, step),
                customer_id=self.customer_id,
                journey=self.journey_name,
                step=step,
                workflow_id=workflow.info().workflow_id,
                entered_at=entered_at,
                cart_id=cart_id,
                ends_on_purchase=ends_on_purchase,
                order_id=order_id,
                product_ids=list(product_ids or []),
                segment=segment,
                send_on=send_on,
                variant=step.variant,
            )
        )
        if result is not None and result.status == "skipped" and result.reason in STOP_REASONS:
            return result.reason
        return None

    async def send_steps(
        self, steps: list[StepSpec], after: datetime, *, why: str, **send: Any
    ) -> str | None:
        """Wait for and send ``steps`` in turn, each ``after_s`` after the previous one was
        due (the first after ``after``); the reason the journey ends early, or None once all
        went. ``send`` is what :meth:`send_step` takes besides the step."""
        due = after
        for step in steps:
            due += timedelta(seconds=step.after_s)
            if not await self.wait_for(step, due, why=why):
                return self.exited.reason if self.exited else "completed"
            stop = await self.send_step(step, **send)
            if stop is not None:
                return stop
        return None

    async def send_after_quiet(
        self,
        steps: list[StepSpec],
        quiet_since: Callable[[], datetime],
        *,
        why: str,
        changed: Callable[[], object],
        send: Callable[[StepSpec], Awaitable[str | None]],
    ) -> JourneyResult:
        """Wait for and send ``steps`` in turn, then finish: the first once ``quiet_since()``
        (the last change) is its ``after_s`` behind, a deadline that moves while we wait
        whenever ``changed()`` does; each later one ``after_s`` after the previous one was
        due. ``send`` sends a step; it returns the reason the journey must end, or None."""
        due = quiet_since()
        for index, step in enumerate(steps):
            if index == 0:

                def quiet_end(after: timedelta = timedelta(seconds=step.after_s)) -> datetime:
                    return quiet_since() + after

                ready = await self.wait_for(step, quiet_end, why=why, changed=changed)
                due = quiet_end()
            else:
                due += timedelta(seconds=step.after_s)
                ready = await self.wait_for(step, due, why=why)
            if not ready:
                break
            stop = await send(step)
            if stop is not None:
                return self.finish(stop)
        return self.finish(self.exited.reason if self.exited else "completed")

    def conclude(self, stop: str | None) -> JourneyResult:
        """Finish with ``stop``, else with the exit that came, else as completed."""
        return self.finish(stop or (self.exited.reason if self.exited else "completed"))

    def send_key(self, entry_id: str, step: StepSpec) -> str:
        """Idempotency key of a step's e-mail: one per journey entry and step."""
        return f"{workflow.info().workflow_id}/{entry_id}/{step.name}"

    def _count(self, name: str, description: str, **labels: str) -> None:
        counter = workflow.metric_meter().create_counter(name, description)
        counter.add(1, {"journey": self.journey_name, **labels})

    def _publish(self) -> None:
        """Show where the journey stands: current details always, search attributes on change."""
        workflow.set_current_details(self._details())
        step = "ended" if self.state == "ended" else self.next_step
        current = (step or "", self.next_send_at)
        if not self._searchable or not step or current == self._published:
            return
        self._published = current
        updates: list[SearchAttributeUpdate] = [JOURNEY_STEP.value_set(current[0])]
        updates.append(
            NEXT_SEND_AT.value_set(self.next_send_at)
            if self.next_send_at
            else NEXT_SEND_AT.value_unset()
        )
        workflow.upsert_search_attributes(updates)

    def _details(self) -> str:
        lines = [f"**{self.title}** for customer `{self.customer_id}`"]
        if self.entered_at:
            lines.append(f"Entered {utc_and_local(self.entered_at, self.timezone)}")
        if self.state == "ended":
            note = f" — {self.exited.note}" if self.exited and self.exited.note else ""
            lines.append(f"**Ended**: {self.exit_reason}{note}")
        elif self.state == "sending":
            lines.append(f"**Now**: sending {self.next_step}")
        elif self.next_step and self.next_send_at:
            lines.append(
                f"**Now**: waiting for {self.waiting_for}; next e-mail **{self.next_step}** at "
                f"{utc_and_local(self.next_send_at, self.timezone)}"
            )
        sent = ", ".join(
            f"{e.step} ({e.status}, {e.at.strftime('%Y-%m-%d %H:%M UTC')})" for e in self.emails
        )
        lines.append(f"**E-mails**: {sent or 'none yet'}")
        return "\n\n".join(lines)
