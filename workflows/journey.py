"""The steps every journey shares: wait (raced against an exit), guard-and-send, status.

A journey subclasses :class:`Journey` and reads like its row in PRODUCT.md's table:
``await self.wait_for(...)`` then ``await self.send(...)``, until the steps run out
or a signal ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # Passed through so their datetime hints are the real datetime class: the sandbox's
    # restricted copy would not decode as one.
    from activities.email import EmailActivities
    from triggermail.durations import format_duration
    from workflows.types import JourneyExit, JourneyStatus, SendEmailInput, SendResult, StepSpec

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
    {"converted", "cart_emptied", "no_consent", "no_email", "unknown_customer"}
)
"""Guard outcomes after which no later step of the journey can be right either."""


class Journey:
    """Shared state and steps of a journey workflow.

    Signals: ``exit(JourneyExit)`` ends the journey at once (purchase, unsubscribe…).
    Queries: ``status() -> JourneyStatus``.
    """

    journey_name: str = ""

    def __init__(self) -> None:
        self.customer_id = ""
        self.exited: JourneyExit | None = None
        self.sent: list[str] = []
        self.next_step: str | None = None
        self.next_send_at: datetime | None = None
        self.state = "waiting"

    @workflow.signal
    def exit(self, signal: JourneyExit) -> None:
        # The first reason wins: a purchase after an unsubscribe changes nothing.
        if self.exited is None:
            self.exited = signal

    @workflow.query
    def status(self) -> JourneyStatus:
        return JourneyStatus(
            journey=self.journey_name,
            customer_id=self.customer_id,
            state=self.state,
            next_step=self.next_step,
            next_send_at=self.next_send_at,
            sent=list(self.sent),
            exit_reason=self.exited.reason if self.exited else None,
        )

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

            def exited_or_moved(seen: object = changed() if changed else None) -> bool:
                moved = changed is not None and changed() != seen
                return self.exited is not None or moved

            try:
                await workflow.wait_condition(
                    exited_or_moved,
                    timeout=remaining,
                    timeout_summary=f"wait {format_duration(remaining)} {why} before {step.name}",
                )
            except TimeoutError:
                return self.exited is None
        return False

    async def send(self, request: SendEmailInput) -> SendResult | None:
        """Run the guarded send activity; None when it failed for good (the journey goes on)."""
        self.state = "sending"
        try:
            result: SendResult = await workflow.execute_activity_method(
                EmailActivities.send_email,
                request,
                start_to_close_timeout=SEND_TIMEOUT,
                schedule_to_close_timeout=SEND_DEADLINE,
                retry_policy=SEND_RETRY,
                summary=f"send {request.step.name}",
            )
        except ActivityError as err:
            workflow.logger.error("step %s not sent: %s", request.step.name, err.cause or err)
            return None
        finally:
            self.state, self.next_step, self.next_send_at = "waiting", None, None
        if result.status in ("sent", "unknown"):
            # "unknown": the provider may have it; it counts as sent so nothing repeats it.
            self.sent.append(request.step.name)
        return result

    def send_key(self, entry_id: str, step: StepSpec) -> str:
        """Idempotency key of a step's e-mail: one per journey entry and step."""
        return f"{workflow.info().workflow_id}/{entry_id}/{step.name}"
