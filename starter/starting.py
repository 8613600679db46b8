"""Starting and ending journeys in Temporal, and where a customer's journeys run.

The routing rules (``starter.routing``) decide from the store what an event asks of
Temporal; this module carries it out: a start is a signal-with-start under the journey's
deterministic ID ("already running" is success), an exit a signal to whatever runs under
the ID. It also finds every workflow ID a customer's journeys may run under, which the
unsubscribe, the customer card and the purchase exits need. Apart from the rules because
it talks to Temporal and they only read the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker
from temporalio.client import Client
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from triggermail.journey_tables import LONGEST_CYCLE
from triggermail.search_attributes import journey_attributes
from triggermail.store import JourneyEntry, Order, OrderLine, Product
from workflows import registry
from workflows.registry import customer_journey_ids, keyed_by
from workflows.types import JourneyExit

RPC_TIMEOUT = timedelta(seconds=10)
"""A Temporal call slower than this is answered 503, well before an SDK's own timeout."""
ORDER_JOURNEYS_HORIZON = timedelta(days=400)
"""How far back a customer's orders may still have journeys running (a year's cycle)."""
LAPSED_JOURNEYS = [j.name for j in keyed_by("lapse")]
"""Journeys keyed by customer and lapse, found from the entries the daily sweep records."""


@dataclass(frozen=True)
class StartJourney:
    """Start a journey, or hand the signal to the one already running under its ID."""

    journey: str
    workflow_id: str
    customer_id: str
    input: Any
    signal: str | None = None
    signal_arg: Any = None
    once: bool = False
    """The ID is used once ever (a welcome, an order's journeys): a closed run refuses it."""


@dataclass(frozen=True)
class ExitJourney:
    """End a journey if one runs under the ID (nothing to do otherwise)."""

    workflow_id: str
    reason: str
    at: datetime
    ref: str | None = None


Route = StartJourney | ExitJourney


async def deliver(client: Client, route: Route, *, task_queue: str) -> None:
    """Hand one route to Temporal: idempotent, so a retried event does nothing twice.

    Raises:
        RPCError: Temporal refused or is unreachable (the intake answers 503 or 4xx).
    """
    if isinstance(route, StartJourney):
        workflow = registry.journey(route.journey).workflow
        try:
            await client.start_workflow(
                workflow.run,
                route.input,
                id=route.workflow_id,
                task_queue=task_queue,
                # A running journey takes the signal; otherwise a new one starts with it.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=(
                    WorkflowIDReusePolicy.REJECT_DUPLICATE
                    if route.once
                    else WorkflowIDReusePolicy.ALLOW_DUPLICATE
                ),
                start_signal=route.signal,
                start_signal_args=[route.signal_arg] if route.signal else [],
                static_summary=f"{workflow.title} · customer {route.customer_id}",
                search_attributes=journey_attributes(route.journey, route.customer_id),
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            if not route.once:
                raise
            # Used before and closed: once ever is the answer.
        return
    await end_journey(
        client, route.workflow_id, JourneyExit(reason=route.reason, at=route.at, ref=route.ref)
    )


async def end_journey(
    client: Client, workflow_id: str, exit: JourneyExit, *, rpc_timeout: timedelta = RPC_TIMEOUT
) -> bool:
    """Signal the journey under ``workflow_id`` to end; False when none runs there.

    The one exit signal: routing's exits, an unsubscribe and an operator's cancel send it.
    A journey that ended already, or never started, is nothing to end (NOT_FOUND).

    Raises:
        RPCError: Temporal refused the signal or is unreachable.
    """
    try:
        await client.get_workflow_handle(workflow_id).signal("exit", exit, rpc_timeout=rpc_timeout)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


def replenishment_key(match: str, product: Product) -> str | None:
    """What a repurchase of ``product`` is matched on; None when its category is unknown."""
    if match == "category":
        return f"category:{product.category}" if product.category else None
    return product.id


def journeys_of(
    session: Session, customer_id: str, now: datetime, *, match: str | None = None
) -> dict[str, list[str]]:
    """Every workflow ID a journey of this customer may run under, by journey name.

    The one-per-customer journeys by their IDs; the journeys keyed by order or product
    from the customer's recent orders (``match``: the replenishment's; None for both
    kinds of key). An unsubscribe ends them all; the customer card lists them.
    """
    ids = {name: [workflow_id] for name, workflow_id in customer_journey_ids(customer_id).items()}
    orders = list(
        session.scalars(
            select(Order)
            .where(
                Order.customer_id == customer_id, Order.placed_at >= now - ORDER_JOURNEYS_HORIZON
            )
            .order_by(Order.placed_at.desc())
            .options(selectinload(Order.lines))
        )
    )
    for per_order in keyed_by("order"):
        ids[per_order.name] = [per_order.workflow_id(order.id) for order in orders]
    per_product = keyed_by("product")
    if per_product:
        # A replenishment counts from an order as old as the longest cycle a product may have.
        product_ids = set(
            session.scalars(
                select(OrderLine.product_id)
                .join(Order, Order.id == OrderLine.order_id)
                .where(Order.customer_id == customer_id, Order.placed_at >= now - LONGEST_CYCLE)
                .distinct()
            )
        )
        products = list(session.scalars(select(Product).where(Product.id.in_(product_ids))))
        matches = [match] if match else ["product", "category"]
        keys = {replenishment_key(m, product) for product in products for m in matches}
        for keyed in per_product:
            ids[keyed.name] = sorted(keyed.workflow_id(customer_id, k) for k in keys if k)
    ids.update(lapsed_journeys(session, customer_id, now))
    # The sweep starts a greeting the day before its day (on 31 December, next year's), and
    # a 31 December greeting behind UTC is still waiting on 1 January UTC (last year's).
    years = (now.year - 1, now.year, now.year + 1)
    for occasion in keyed_by("occasion"):
        ids[occasion.name] = [
            workflow_id(customer_id, y)
            for y in years
            for workflow_id in occasion.sweep_kinds.values()
        ]
    return ids


def lapsed_journeys(session: Session, customer_id: str, now: datetime) -> dict[str, list[str]]:
    """The customer's reactivations and win-backs that may still run, by journey name.

    Keyed by the day of the last order, their IDs cannot be made from the customer alone:
    the sweep's entries name them (one indexed query on customer and entry time).
    """
    rows = session.execute(
        select(JourneyEntry.journey, JourneyEntry.workflow_id).where(
            JourneyEntry.customer_id == customer_id,
            JourneyEntry.entered_at >= now - ORDER_JOURNEYS_HORIZON,
            JourneyEntry.journey.in_(LAPSED_JOURNEYS),
        )
    )
    ids: dict[str, list[str]] = {journey: [] for journey in LAPSED_JOURNEYS}
    for journey, workflow_id in rows:
        ids[journey].append(workflow_id)
    return ids


def journey_ids(
    sessions: sessionmaker[Session], customer_id: str, now: datetime, *, match: str | None = None
) -> dict[str, list[str]]:
    """:func:`journeys_of` in a session of its own (for ``asyncio.to_thread``)."""
    with sessions() as session:
        return journeys_of(session, customer_id, now, match=match)
