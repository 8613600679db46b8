"""Event intake: store a Segment event once, update the shop's tables, route it to journeys.

The same code serves the Python call and the HTTP API. An event counts as accepted
only when it is in the store *and* Temporal has taken what it starts or signals;
``routed_at`` records the second half, so a retry of an event whose routing failed
routes it again, and a retry of a routed one changes nothing. What an event changes in
the shop's tables is ``starter.shop_tables``; which journeys it concerns, ``starter.routing``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from starter.events import EventError, SegmentEvent, parse_event
from starter.routing import Router
from starter.rows import prefetch
from starter.shop_tables import ShopTables
from starter.starting import Route, StartJourney, deliver
from triggermail.journeys import JourneysConfig
from triggermail.store import Event, utcnow

log = logging.getLogger(__name__)

TRANSIENT_STORE_ERRORS = (DBAPIError, DisconnectionError, PoolTimeout)
"""Store failures a retry can cure: down, locked, overloaded, not migrated yet. A value the
database refuses (DataError) is one event's fault and is refused with that event instead."""
EVENT_FAULTS = (StatementError, ValueError, ArithmeticError, RecursionError)
"""What one event's values can make storing it raise (besides DataError: a value a column's
type refuses before the database sees it). Never retried; the event is refused alone."""


class IntakeUnavailable(Exception):
    """The store or Temporal cannot take the event now; the caller should retry (HTTP 503)."""


@dataclass
class IntakeResult:
    message_id: str
    duplicate: bool = False
    started: list[str] = field(default_factory=list)
    """Journeys signal-with-started (started, or signalled when already running)."""
    signalled: list[str] = field(default_factory=list)
    """Journeys sent an exit signal (whether or not one was running)."""


class Intake:
    """Takes Segment events from any door (Python call, HTTP) through one path."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        client: Client,
        journeys: JourneysConfig,
        task_queue: str,
        clock: Callable[[], datetime] = utcnow,
        routes_in_flight: int = 64,
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.client = client
        self.journeys = journeys
        self.task_queue = task_queue
        self.router = Router(journeys, clock)
        self.tables = ShopTables(shop=journeys.shop, clock=clock)
        self._in_flight = asyncio.Semaphore(routes_in_flight)

    async def submit(
        self, event: SegmentEvent | Mapping[str, Any], *, received_at: datetime | None = None
    ) -> IntakeResult:
        """Store and route one event; the same ``messageId`` twice changes nothing.

        Raises:
            EventError: the event is malformed (names the field), or the store or Temporal
                refused it for good.
            IntakeUnavailable: the store or Temporal is down; nothing was half-done
                that a retry would double.
        """
        parsed = event if isinstance(event, SegmentEvent) else parse_event(event)
        if missing := parsed.missing():
            raise EventError(missing)
        (outcome,) = await self.submit_many([parsed], received_at=received_at)
        if isinstance(outcome, EventError):
            raise outcome
        return outcome

    async def submit_many(
        self, events: Sequence[SegmentEvent], *, received_at: datetime | None = None
    ) -> list[IntakeResult | EventError]:
        """Store events in order in one transaction, then route them to Temporal together.

        Journeys of different customers are started and signalled concurrently; the events
        of one journey reach it in the order given. Each outcome is the event's result, or
        the reason the store or Temporal refused it for good (a value it cannot hold).

        Raises:
            IntakeUnavailable: the store or Temporal is down. What was done stays done and
                is recorded, so a retry of the same events routes only what is left.
        """
        for event in events:
            if event.message_id is None:
                raise ValueError("events must be parsed (parse_event) before they are submitted")
        received = received_at or self.clock()
        try:
            stored = await asyncio.to_thread(self._store_all, events, received)
        except TRANSIENT_STORE_ERRORS as err:
            raise IntakeUnavailable(f"store unavailable: {_db_reason(err)}") from err

        failed = await self._route_all(stored)
        routed = [
            s.message_id
            for i, s in enumerate(stored)
            if isinstance(s, _Stored) and s.routes and i not in failed
        ]
        if routed:
            try:
                await asyncio.to_thread(self._mark_routed, routed)
            except TRANSIENT_STORE_ERRORS as err:
                # Routing is idempotent, so a retry that routes again is harmless.
                raise IntakeUnavailable(f"store unavailable: {_db_reason(err)}") from err
        unavailable = [err for err in failed.values() if _transient(err)]
        if unavailable:
            raise IntakeUnavailable(f"Temporal unavailable: {unavailable[0].message}")

        outcomes: list[IntakeResult | EventError] = []
        for i, s in enumerate(stored):
            if isinstance(s, EventError):
                outcomes.append(s)
            elif i in failed:
                outcomes.append(EventError([("", f"Temporal refused it: {failed[i].message}")]))
            else:
                result = IntakeResult(message_id=s.message_id, duplicate=not s.fresh)
                for route in s.routes:
                    target = result.started if isinstance(route, StartJourney) else result.signalled
                    target.append(route.workflow_id)
                outcomes.append(result)
        return outcomes

    # -- store ---------------------------------------------------------------------------

    def _store_all(
        self, events: Sequence[SegmentEvent], received: datetime
    ) -> list[_Stored | EventError]:
        """Apply all events in one transaction (one commit, the fast path)."""
        for _attempt in range(3):
            try:
                with self.session_factory() as session:
                    out: list[_Stored | EventError] = list(
                        self._store_in(session, events, received)
                    )
                    session.commit()
                    return out
            except IntegrityError:
                # A concurrent delivery of the same event, or of another event creating the
                # same customer, product or identity, won the race: look again.
                continue
            except DataError:
                break
            except TRANSIENT_STORE_ERRORS:
                raise
            except EVENT_FAULTS:
                break
        # One event holds a value the database will not take, or keeps colliding: apply each
        # alone, so that event is refused and the others still go in.
        return [self._store_alone(event, received) for event in events]

    def _store_alone(self, event: SegmentEvent, received: datetime) -> _Stored | EventError:
        reason: Exception | None = None
        for _attempt in range(3):
            try:
                with self.session_factory() as session:
                    (out,) = self._store_in(session, [event], received)
                    session.commit()
                    return out
            except IntegrityError as err:
                reason = err
                continue
            except DataError as err:
                reason = err
                break
            except TRANSIENT_STORE_ERRORS:
                raise
            except EVENT_FAULTS as err:
                reason = err
                break
        assert reason is not None
        # The driver's words stay in the log: they describe our schema, not the client's event.
        log.warning("event %s refused by the store: %s", event.message_id, _db_reason(reason))
        return EventError([("", "the store cannot hold one of its values")])

    def _store_in(
        self, session: Session, events: Sequence[SegmentEvent], received: datetime
    ) -> list[_Stored]:
        ids = [event.message_id for event in events if event.message_id is not None]
        known: dict[str, Event] = {}
        for chunk in range(0, len(ids), 500):
            rows = session.scalars(
                select(Event).where(Event.message_id.in_(ids[chunk : chunk + 500]))
            )
            known.update((row.message_id, row) for row in rows)
        prefetch(session, [event for event in events if event.message_id not in known], received)
        seen: set[str] = set()
        return [self._store_one(session, event, received, known, seen) for event in events]

    def _store_one(
        self,
        session: Session,
        event: SegmentEvent,
        received: datetime,
        known: dict[str, Event],
        seen: set[str],
    ) -> _Stored:
        message_id = event.message_id
        assert message_id is not None
        if message_id in seen:
            return _Stored(message_id, fresh=False, routes=[])
        seen.add(message_id)
        row = known.get(message_id)
        if row is not None:
            if row.routed_at is not None:
                return _Stored(message_id, fresh=False, routes=[])
            # Stored before, but Temporal never confirmed: route it from the store as it is now.
            routes = self.router.routes(session, event, row.timestamp, row.customer_id)
            if not routes:
                row.routed_at = self.clock()
            return _Stored(message_id, fresh=False, routes=routes)

        happened = event.happened_at(received)
        customer_id = self.tables.owner(session, event, happened)
        row = Event(
            message_id=message_id,
            type=event.type,
            event=event.event,
            user_id=event.user_id,
            anonymous_id=event.anonymous_id,
            customer_id=customer_id,
            timestamp=happened,
            received_at=received,
            payload=event.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        session.add(row)
        self.tables.apply(session, event, happened, customer_id)
        routes = self.router.routes(session, event, happened, customer_id)
        if not routes:
            row.routed_at = self.clock()
        return _Stored(message_id, fresh=True, routes=routes)

    def _mark_routed(self, message_ids: list[str]) -> None:
        with self.session_factory() as session:
            for chunk in range(0, len(message_ids), 500):
                # No objects of this session to keep in step: skip the ORM's evaluation.
                session.execute(
                    update(Event)
                    .where(
                        Event.message_id.in_(message_ids[chunk : chunk + 500]),
                        Event.routed_at.is_(None),
                    )
                    .values(routed_at=self.clock())
                    .execution_options(synchronize_session=False)
                )
            session.commit()

    # -- routing -------------------------------------------------------------------------

    async def _route_all(self, stored: list[_Stored | EventError]) -> dict[int, RPCError]:
        """Route every stored event; returns the events Temporal did not take, by index."""
        journeys: dict[str, list[tuple[int, Route]]] = {}
        for index, outcome in enumerate(stored):
            if isinstance(outcome, _Stored):
                for route in outcome.routes:
                    journeys.setdefault(route.workflow_id, []).append((index, route))
        failed: dict[int, RPCError] = {}

        async def in_order(routes: list[tuple[int, Route]]) -> None:
            for position, (index, route) in enumerate(routes):
                if index in failed:
                    continue
                try:
                    async with self._in_flight:
                        await deliver(self.client, route, task_queue=self.task_queue)
                except RPCError as err:
                    failed[index] = err
                    if _transient(err):
                        # The journey's later events must not overtake this one.
                        for later, _ in routes[position + 1 :]:
                            failed.setdefault(later, err)
                        return

        await asyncio.gather(*(in_order(routes) for routes in journeys.values()))
        return failed


@dataclass
class _Stored:
    message_id: str
    fresh: bool
    routes: list[Route]
    """What Temporal still has to take for this event."""


def _transient(err: RPCError) -> bool:
    # INVALID_ARGUMENT will fail the same way on every retry; anything else (unreachable,
    # overloaded, timed out, misconfigured) may pass later, so the client must retry.
    return err.status != RPCStatusCode.INVALID_ARGUMENT


def _db_reason(err: Exception) -> str:
    orig = getattr(err, "orig", None)
    return str(orig or err).strip().splitlines()[0]
