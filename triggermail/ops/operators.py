"""What operators ask of running journeys: find them, read their story, end one.

``triggermail journeys …`` renders these; the Temporal UI shows the same through
search attributes, current details and the summaries on every timer and activity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from starter.starting import end_journey
from triggermail.durations import format_duration
from triggermail.search_attributes import CUSTOMER_ID, JOURNEY, JOURNEY_STEP, NEXT_SEND_AT
from workflows.abandoned_cart import AbandonedCartWorkflow
from workflows.types import CartActivity, JourneyExit, JourneyResult, JourneyStatus, SendResult

SIGNAL_TYPES: dict[str, type] = {"exit": JourneyExit, "cart_activity": CartActivity}


@dataclass
class JourneyRow:
    workflow_id: str
    journey: str | None
    customer_id: str | None
    status: str
    step: str | None
    next_send_at: datetime | None
    started_at: datetime | None
    closed_at: datetime | None


@dataclass
class TimelineEntry:
    at: datetime
    kind: str
    """``entry``, ``signal``, ``wait``, ``waited``, ``send``, ``sent``, ``exit``."""
    text: str
    send_id: str | None = None


@dataclass
class Timeline:
    workflow_id: str
    status: str
    entries: list[TimelineEntry] = field(default_factory=list)
    journey: JourneyStatus | None = None
    """The ``status`` query's answer while the workflow can still answer it."""


def visibility_query(
    *, customer: str | None = None, journey: str | None = None, running: bool | None = None
) -> str:
    """A Temporal visibility query for journeys, with values quoted safely."""
    clauses = [f"{JOURNEY.name} IS NOT NULL"]
    if customer:
        clauses.append(f"{CUSTOMER_ID.name} = {_quote(customer)}")
    if journey:
        clauses.append(f"{JOURNEY.name} = {_quote(journey)}")
    if running is True:
        clauses.append("ExecutionStatus = 'Running'")
    elif running is False:
        clauses.append("ExecutionStatus != 'Running'")
    return " AND ".join(clauses)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def list_journeys(
    client: Client,
    *,
    customer: str | None = None,
    journey: str | None = None,
    running: bool | None = None,
    limit: int = 50,
) -> list[JourneyRow]:
    """Journeys matching the filters, newest first."""
    rows = []
    query = visibility_query(customer=customer, journey=journey, running=running)
    async for execution in client.list_workflows(query, limit=limit):
        attributes = execution.typed_search_attributes
        rows.append(
            JourneyRow(
                workflow_id=execution.id,
                journey=attributes.get(JOURNEY),
                customer_id=attributes.get(CUSTOMER_ID),
                status=_status_name(execution.status),
                step=attributes.get(JOURNEY_STEP),
                next_send_at=attributes.get(NEXT_SEND_AT),
                started_at=execution.start_time,
                closed_at=execution.close_time,
            )
        )
    return rows


async def cancel_journey(
    client: Client, workflow_id: str, *, reason: str, at: datetime | None = None
) -> bool:
    """End a journey gracefully: no e-mail after this, and the reason is in its history.
    False when no journey runs under the ID (nothing to cancel).

    Args:
        at: when the operator cancelled it (default: now, by this machine's clock).

    Raises:
        RPCError: Temporal refused or is unreachable.
    """
    exit = JourneyExit(reason="cancelled", at=at or datetime.now(UTC), note=reason)
    return await end_journey(client, workflow_id, exit)


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """What the Temporal UI shows under "Current details"."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def journey_timeline(client: Client, workflow_id: str) -> Timeline:
    """Entry, waits, sends with their outcome, signals and the end, from the history."""
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    timeline = Timeline(workflow_id=workflow_id, status=_status_name(description.status))
    history = await handle.fetch_history()
    decode = _Decoder(client)
    scheduled: dict[int, str] = {}
    for event in history.events:
        entry = _entry(event, decode, scheduled)
        if entry is not None:
            timeline.entries.append(entry)
    if description.status == WorkflowExecutionStatus.RUNNING:
        timeline.journey = await handle.query(AbandonedCartWorkflow.status)
    return timeline


class _Decoder:
    def __init__(self, client: Client) -> None:
        self.converter = client.data_converter.payload_converter

    def one(self, payloads: Payloads, kind: type) -> Any:
        values = self.converter.from_payloads(list(payloads.payloads), [kind])
        return values[0] if values else None

    def text(self, payload: Payload) -> str:
        return str(self.converter.from_payloads([payload], [str])[0]) if payload.data else ""


def _entry(
    event: HistoryEvent, decode: _Decoder, scheduled: dict[int, str]
) -> TimelineEntry | None:
    at = event.event_time.ToDatetime(tzinfo=UTC)
    summary = decode.text(event.user_metadata.summary) if event.HasField("user_metadata") else ""
    kind = event.WhichOneof("attributes")
    if kind == "workflow_execution_started_event_attributes":
        attrs = event.workflow_execution_started_event_attributes
        started = decode.one(attrs.input, dict)
        customer = started.get("customer_id") if isinstance(started, dict) else None
        steps = started.get("spec", {}).get("steps", []) if isinstance(started, dict) else []
        plan = ", ".join(f"{s['name']} (+{_duration(s['after_s'])})" for s in steps)
        return TimelineEntry(at, "entry", f"entered: customer {customer}; steps: {plan}")
    if kind == "workflow_execution_signaled_event_attributes":
        signaled = event.workflow_execution_signaled_event_attributes
        signal_type = SIGNAL_TYPES.get(signaled.signal_name, dict)
        value = decode.one(signaled.input, signal_type)
        if isinstance(value, JourneyExit):
            detail = value.reason + (f" ({value.ref})" if value.ref else "")
            detail += f": {value.note}" if value.note else ""
            return TimelineEntry(at, "signal", f"exit requested: {detail}")
        if isinstance(value, CartActivity):
            return TimelineEntry(at, "signal", f"cart {value.cart_id} changed")
        return TimelineEntry(at, "signal", f"signal {signaled.signal_name}")
    if kind == "timer_started_event_attributes":
        return TimelineEntry(at, "wait", summary or "wait")
    if kind == "timer_fired_event_attributes":
        return TimelineEntry(at, "waited", "wait over")
    if kind == "timer_canceled_event_attributes":
        return TimelineEntry(at, "waited", "wait cut short by a signal")
    if kind == "activity_task_scheduled_event_attributes":
        scheduled[event.event_id] = (
            summary or event.activity_task_scheduled_event_attributes.activity_type.name
        )
        return None
    if kind == "activity_task_completed_event_attributes":
        completed = event.activity_task_completed_event_attributes
        result = decode.one(completed.result, SendResult)
        what = scheduled.get(completed.scheduled_event_id, "activity")
        if isinstance(result, SendResult):
            reason = f" ({result.reason})" if result.reason else ""
            return TimelineEntry(at, "sent", f"{what}: {result.status}{reason}", result.send_id)
        return TimelineEntry(at, "sent", f"{what}: done")
    if kind == "activity_task_failed_event_attributes":
        failed = event.activity_task_failed_event_attributes
        what = scheduled.get(failed.scheduled_event_id, "activity")
        return TimelineEntry(at, "sent", f"{what}: failed for good: {failed.failure.message}")
    if kind == "activity_task_timed_out_event_attributes":
        timed_out = event.activity_task_timed_out_event_attributes
        what = scheduled.get(timed_out.scheduled_event_id, "activity")
        return TimelineEntry(at, "sent", f"{what}: gave up after retrying")
    if kind == "workflow_execution_completed_event_attributes":
        result = decode.one(
            event.workflow_execution_completed_event_attributes.result, JourneyResult
        )
        sent = (
            ", ".join(result.sent) if isinstance(result, JourneyResult) and result.sent else "none"
        )
        reason = result.exit_reason if isinstance(result, JourneyResult) else "?"
        return TimelineEntry(at, "exit", f"ended: {reason}; e-mails sent: {sent}")
    if kind == "workflow_execution_terminated_event_attributes":
        reason = event.workflow_execution_terminated_event_attributes.reason
        return TimelineEntry(at, "exit", f"terminated: {reason or 'no reason given'}")
    if kind == "workflow_execution_failed_event_attributes":
        failure = event.workflow_execution_failed_event_attributes.failure
        return TimelineEntry(at, "exit", f"failed: {failure.message}")
    if kind == "workflow_execution_continued_as_new_event_attributes":
        return TimelineEntry(at, "exit", "continued as a new run")
    return None


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status else "unknown"


def send_ids(entries: Sequence[TimelineEntry]) -> list[str]:
    return [e.send_id for e in entries if e.send_id]
