"""The daily sweep in the store: who crossed a threshold, page by page, and their entries.

Every query reads an index on the order statistics the intake keeps on each customer
(``last_order_at``, ``birthday_md``, ``first_order_md``), one page at a time, so a
sweep's cost grows with the customers it finds, not with the customers there are. Two
aggregates run once per sweep: the VIP threshold (an index walk down ``total_spent`` over
the top ``vip_percent``, ranked by the buyer tally the store keeps, not by a count) and,
only when ``[win_back] cadence_factor`` is set, the shop's average time between orders —
the one O(customers) read, over every customer with two orders or more.

A day's lapse: a customer whose last order was on day ``X - after_last_order`` (UTC)
crosses the threshold on day ``X``; a sweep for day ``D`` covers the days since the last
finished sweep (just ``D`` for the first one). Birthdays and anniversaries are looked up
for the day after: a sweep runs the day before, while 09:00 on that day is still ahead in
every timezone from UTC-12 to UTC+14.

Apart from the activities (:mod:`activities.sweep`), which describe and start the
journeys in Temporal, because this is the sweep's whole cost: plain SQL over indexes,
run in a thread, which the tests and ``bench/sweep.py`` drive without a Temporal.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, cast

from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Row, Select, Table, func, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from activities.segments import segment_of, vip_threshold
from triggermail.birthdays import month_day
from triggermail.journeys import JourneysConfig
from triggermail.localtime import customer_zone
from triggermail.store import Customer, JourneyEntry, Suppression, SweepRun, utcnow
from triggermail.winners import Winners
from workflows import registry
from workflows.sweep import (
    KINDS,
    FinishInput,
    JourneyCounts,
    SweepCursor,
    SweepPlan,
)
from workflows.types import JourneySpec, LapsedInput, OccasionInput

DAY = timedelta(days=1)
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}

JOURNEY_OF = {kind: journey.name for kind, journey in registry.SWEPT.items()}
"""The journeys TOML table (and ``Journey`` search attribute) of each kind."""
SWEPT_ID = {kind: journey.sweep_kinds[kind] for kind, journey in registry.SWEPT.items()}
"""Each kind's ID scheme."""
LAPSED = {kind for kind, journey in registry.SWEPT.items() if journey.keyed_by == "lapse"}
"""The kinds read by last order; the others by the day of an occasion."""


def other_lapsed(kind: str, customer_id: str, key: str) -> list[str]:
    """A lapsed customer is in one lapsed journey at a time: the other kinds' IDs for the
    lapse."""
    return [SWEPT_ID[other](customer_id, key) for other in sorted(LAPSED - {kind})]


SUPPRESSION = (
    select(Suppression.reason)
    .where(
        or_(
            Suppression.customer_id == Customer.id,
            Suppression.email == func.lower(Customer.email),
        )
    )
    .order_by(Suppression.id)
    .limit(1)
    .correlate(Customer)
    .scalar_subquery()
)
"""Why the customer or their address is suppressed, as the send guard reads it (the first
row): two index lookups per match, in the page's own query."""
SWEPT = (
    Customer.id,
    Customer.email,
    Customer.marketing_consent,
    Customer.timezone,
    SUPPRESSION.label("suppressed"),
)
KIND_COLUMNS = {
    "reactivation": (Customer.last_order_at, Customer.orders_count, Customer.total_spent),
    "win_back": (Customer.last_order_at, Customer.orders_count, Customer.total_spent),
    "birthday": (Customer.birthday_md,),
    "anniversary": (Customer.first_order_md, Customer.first_order_at),
}
"""What the sweep reads of a customer (rows, not ORM objects: thousands per sweep), never
their traits or names; and what each kind reads besides."""


class SweepError(Exception):
    """A sweep that cannot work, whatever the retries (a malformed day): not retried."""


@dataclass
class Candidate:
    """A match that passed the store's checks: its journey, ready to start."""

    kind: str
    customer_id: str
    workflow_id: str
    input: LapsedInput | OccasionInput
    segment: str | None = None
    other_ids: tuple[str, ...] = ()
    """The other lapsed journeys' IDs for the same lapse (checked in Temporal)."""
    day_ends_at: datetime | None = None
    """Birthdays and anniversaries: the end of the day in the customer's timezone (UTC)."""


@dataclass
class Page:
    """One page read from the store."""

    kind: str
    counts: JourneyCounts
    candidates: list[Candidate]
    next: SweepCursor | None
    rows: int = 0
    """Rows the queries read (customers and suppressions), for the benchmark."""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SweepError(f"{text!r} is not a day; write YYYY-MM-DD") from None


def occasion_days(plan: SweepPlan) -> list[date]:
    """Days whose birthdays and anniversaries this sweep starts: the day after each covered
    day, but none already over (a missed sweep does not send last week's birthdays)."""
    day, first = date.fromisoformat(plan.day), date.fromisoformat(plan.first_day)
    return [
        first + DAY * (i + 1) for i in range((day - first).days + 1) if first + DAY * i >= day - DAY
    ]


def month_days(days: Iterable[date]) -> dict[str, date]:
    """``MM-DD`` to look up for each occasion day; 29 February is kept on 28 February in
    years without one."""
    out: dict[str, date] = {}
    for day in days:
        out[month_day(day)] = day
        if day.month == 2 and day.day == 28 and not _leap(day.year):
            out["02-29"] = day
    return out


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@functools.lru_cache(maxsize=4096)
def occasion_moments(
    day: date, timezone: str | None, send_at: time, shop_timezone: str
) -> tuple[datetime, datetime]:
    """``send_at`` on ``day`` and the end of that day in ``timezone`` (the shop's when the
    customer has none or a wrong one), both as UTC. Cached: a sweep's thousands of
    occasions fall on a day or two in a few dozen timezones."""
    zone = customer_zone(timezone, shop_timezone)
    return (
        datetime.combine(day, send_at, tzinfo=zone).astimezone(UTC),
        datetime.combine(day + DAY, time(0), tzinfo=zone).astimezone(UTC),
    )


class SweepStore:
    """The sweep's reads and writes: its plan, its pages of matches, their entries and the
    day's record; ``SweepActivities`` hands in the store, the journeys config and the clock."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        journeys: JourneysConfig,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = session_factory
        self.journeys = journeys
        self.clock = clock
        self.winners = Winners()

    def plan(self, day_text: str) -> SweepPlan:
        """Which days the sweep covers, and what it computes once; marks the day's sweep begun.

        Raises:
            SweepError: ``day_text`` is not a day.
        """
        day = parse_day(day_text)
        with self.sessions.begin() as session:
            last = session.scalar(
                select(func.max(SweepRun.day)).where(
                    SweepRun.day < day, SweepRun.finished_at.is_not(None)
                )
            )
            if isinstance(last, str):  # SQLite without the column's type
                last = date.fromisoformat(last)
            first = last + DAY if last is not None else day
            run = session.get(SweepRun, day)
            if run is None:
                session.add(SweepRun(day=day, started_at=self.clock(), counts={}))
            else:
                run.started_at = self.clock()
            threshold = vip_threshold(session, self.journeys.segments)
            win_back_after, gap = self._win_back_after(session)
        return SweepPlan(
            day=day.isoformat(),
            first_day=first.isoformat(),
            kinds=self._kinds(),
            vip_threshold=str(threshold) if threshold is not None else None,
            win_back_after_s=win_back_after.total_seconds() if win_back_after else None,
            average_gap_s=gap,
        )

    def _kinds(self) -> list[str]:
        kinds = []
        for kind in KINDS:
            journey = JOURNEY_OF[kind]
            if not self.journeys.is_enabled(journey):
                continue
            if kind != journey:
                # A journey started by more than one kind (the birthday journey by a
                # birthday and an anniversary): each is a step of its own, or off.
                config = getattr(self.journeys, journey)
                if kind not in {step.name for step in config.steps}:
                    continue
            kinds.append(kind)
        return kinds

    def _win_back_after(self, session: Session) -> tuple[timedelta | None, float | None]:
        config = self.journeys.win_back
        if config is None or not config.enabled:
            return None, None
        if config.cadence_factor <= 0:
            return config.after_last_order, None
        gap = average_gap_s(session)
        if gap is None:
            return config.after_last_order, None
        # Whole days, so consecutive sweeps' windows meet as the average drifts.
        days = max(round(config.cadence_factor * gap / 86400), 1)
        return timedelta(days=days), gap

    def read_page(self, plan: SweepPlan, cursor: SweepCursor) -> Page:
        """One page of ``cursor.kind``'s matches after the cursor, checked against the store
        (e-mail, consent, suppressions); the next cursor."""
        kind = cursor.kind
        size = self.journeys.sweep.page_size
        now = self.clock()
        with self.sessions() as session:
            query = (
                self._lapsed_query(plan, cursor)
                if kind in LAPSED
                else self._occasion_query(plan, cursor)
            )
            # One statement needs no transaction around it (two round trips fewer a page);
            # Core, not the ORM's loading: plain rows, thousands per sweep.
            connection = session.connection(execution_options=AUTOCOMMIT)
            customers = connection.execute(query.limit(size)).all()
            journey = JOURNEY_OF[kind]
            # Holdouts and A/B variants are drawn per customer; without them every
            # customer enters the same journey.
            personal = self.journeys.draws_per_customer(journey)
            winners = self.winners.current(session, self.journeys) if personal else {}
        counts = JourneyCounts()
        candidates = []
        threshold = Decimal(plan.vip_threshold) if plan.vip_threshold is not None else None
        days = month_days(occasion_days(plan))
        spec = self.journeys.spec(journey)
        suppressions = 0
        for row in customers:
            # Each field read once, from a tuple: a row's attribute lookups add up over
            # thousands of matches.
            customer_id, email, consent, timezone, suppressed, *columns = row
            suppressions += bool(suppressed)
            if personal:
                spec = self.journeys.spec(journey, customer_id=customer_id, winners=winners)
            candidate = (
                self._lapsed(kind, customer_id, timezone, columns, spec, threshold, now)
                if kind in LAPSED
                else self._occasion(kind, customer_id, timezone, columns, spec, days)
            )
            if candidate is None:
                continue  # an anniversary of an order placed this year
            counts.matched += 1
            reason = _skip_reason(email, consent, suppressed, candidate, now)
            if reason is not None:
                counts.skipped[reason] = counts.skipped.get(reason, 0) + 1
            else:
                candidates.append(candidate)
        return Page(
            kind=kind,
            counts=counts,
            candidates=candidates,
            next=self._next(plan, cursor, customers, size),
            rows=len(customers) + suppressions,
        )

    def _lapsed_query(self, plan: SweepPlan, cursor: SweepCursor) -> Select[Any]:
        after = self._after(cursor.kind, plan)
        lo = midnight(date.fromisoformat(plan.first_day)) - after
        hi = midnight(date.fromisoformat(plan.day)) + DAY - after
        query = select(*SWEPT, *KIND_COLUMNS[cursor.kind]).where(
            Customer.last_order_at >= lo, Customer.last_order_at < hi
        )
        if cursor.after_key is not None:
            key = datetime.fromisoformat(cursor.after_key)
            query = query.where(
                Customer.last_order_at >= key,
                or_(Customer.last_order_at > key, Customer.id > cursor.after_id),
            )
        return query.order_by(Customer.last_order_at, Customer.id)

    def _after(self, kind: str, plan: SweepPlan) -> timedelta:
        if kind == "win_back":
            if plan.win_back_after_s is None:
                raise SweepError("the win-back is not configured")
            return timedelta(seconds=plan.win_back_after_s)
        if self.journeys.reactivation is None:
            raise SweepError("the reactivation is not configured")
        return self.journeys.reactivation.after_last_order

    def _occasion_query(self, plan: SweepPlan, cursor: SweepCursor) -> Select[Any]:
        days = month_days(occasion_days(plan))
        if cursor.kind == "birthday":
            query = select(*SWEPT, *KIND_COLUMNS["birthday"]).where(
                Customer.birthday_md.in_(list(days))
            )
        else:
            # Orders placed before the first occasion day: a same-day order of this year
            # is not an anniversary yet.
            first = min(days.values(), default=date.fromisoformat(plan.day))
            query = select(*SWEPT, *KIND_COLUMNS["anniversary"]).where(
                Customer.first_order_md.in_(list(days)), Customer.first_order_at < midnight(first)
            )
        if cursor.after_id is not None:
            query = query.where(Customer.id > cursor.after_id)
        return query.order_by(Customer.id)

    def _next(
        self, plan: SweepPlan, cursor: SweepCursor, customers: Sequence[Row[Any]], size: int
    ) -> SweepCursor | None:
        if len(customers) == size:
            last = customers[-1]
            lapsed = cursor.kind in LAPSED and last.last_order_at is not None
            key = last.last_order_at.isoformat() if lapsed and last.last_order_at else None
            return SweepCursor(cursor.kind, after_key=key, after_id=last.id)
        later = plan.kinds[plan.kinds.index(cursor.kind) + 1 :]
        return SweepCursor(later[0]) if later else None

    def _lapsed(
        self,
        kind: str,
        customer_id: str,
        timezone: str | None,
        columns: list[Any],
        spec: JourneySpec,
        threshold: Decimal | None,
        now: datetime,
    ) -> Candidate:
        last_order_at, orders_count, total_spent = columns  # KIND_COLUMNS
        segment = segment_of(total_spent, orders_count, threshold, self.journeys.segments)
        key = last_order_at.date().isoformat()
        # The segment's offer is part of what the journey keeps for life.
        spec = self.journeys.offered(JOURNEY_OF[kind], spec, segment)
        return Candidate(
            kind=kind,
            customer_id=customer_id,
            workflow_id=SWEPT_ID[kind](customer_id, key),
            input=LapsedInput(
                customer_id=customer_id,
                entered_at=now,
                entry_key=key,
                spec=spec,
                segment=segment,
                last_order_at=last_order_at,
                timezone=timezone,
            ),
            segment=segment,
            other_ids=tuple(other_lapsed(kind, customer_id, key)),
        )

    def _occasion(
        self,
        kind: str,
        customer_id: str,
        timezone: str | None,
        columns: list[Any],
        spec: JourneySpec,
        days: dict[str, date],
    ) -> Candidate | None:
        day = days[columns[0] or ""]  # KIND_COLUMNS: the MM-DD first
        years = None
        if kind == "anniversary":
            years = day.year - columns[1].year
            if years < 1:
                return None
        assert self.journeys.birthday is not None
        send_at, day_ends_at = occasion_moments(
            day, timezone, self.journeys.birthday.send_at, self.journeys.shop.timezone
        )
        return Candidate(
            kind=kind,
            customer_id=customer_id,
            workflow_id=SWEPT_ID[kind](customer_id, day.year),
            day_ends_at=day_ends_at,
            input=OccasionInput(
                customer_id=customer_id,
                occasion=kind,
                day=day.isoformat(),
                send_at=send_at,
                spec=spec,
                years=years,
                timezone=timezone,
            ),
        )

    def record_entries(self, plan: SweepPlan, candidates: list[Candidate]) -> list[Candidate]:
        """Record each journey's entry with its segment, once: a second sweep of the day
        finds the first's segment and starts (nothing) with it."""
        if not candidates:
            return []
        now = self.clock()
        sweep_date = date.fromisoformat(plan.day)
        with self.sessions() as session:
            if _dialect(session) == "postgresql":
                # A journey's entries in one statement, atomic by itself: no transaction
                # around it (two round trips fewer a page).
                connection = session.connection(execution_options=AUTOCOMMIT)
                earlier = _insert_entries_postgresql(connection, candidates, now, sweep_date)
            else:
                connection = session.connection()
                earlier = _insert_entries_sqlite(connection, candidates, now, sweep_date)
                session.commit()
            # Entries of an earlier run of the day: the segment they recorded stands.
            query = select(JourneyEntry.workflow_id, JourneyEntry.segment).where(
                JourneyEntry.workflow_id.in_(earlier)
            )
            stored = (
                {workflow_id: segment for workflow_id, segment in session.execute(query)}
                if earlier
                else {}
            )
        out = []
        for c in candidates:
            segment = stored.get(c.workflow_id, c.segment)
            if isinstance(c.input, LapsedInput) and segment not in (None, c.segment):
                c = dataclasses.replace(c, input=dataclasses.replace(c.input, segment=segment))
            out.append(c)
        return out

    def finish(self, input: FinishInput) -> None:
        """Record the day's sweep as finished, with its counts."""
        day = parse_day(input.plan.day)
        with self.sessions.begin() as session:
            run = session.get(SweepRun, day)
            if run is None:
                run = SweepRun(day=day, started_at=self.clock())
                session.add(run)
            run.finished_at = self.clock()
            run.matched = sum(c.matched for c in input.counts.values())
            run.started = sum(c.started for c in input.counts.values())
            run.counts = {
                "first_day": input.plan.first_day,
                **{kind: dataclasses.asdict(c) for kind, c in input.counts.items()},
            }


INSERT_ENTRIES = """
    INSERT INTO journey_entries
        (workflow_id, customer_id, journey, segment, entered_at, sweep_date)
    SELECT w, c, CAST(%(journey)s AS varchar), s,
        CAST(%(entered_at)s AS timestamptz), CAST(%(sweep_date)s AS date)
    FROM unnest(
        CAST(%(workflow_id)b AS varchar[]), CAST(%(customer_id)b AS varchar[]),
        CAST(%(segment)b AS varchar[])
    ) AS page(w, c, s)
"""
"""One journey's entries in one statement of three arrays (a VALUES list of a few
thousand parameters costs more to build and parse than to insert), in psycopg's own
placeholders: ``%(…)b`` sends the arrays binary, not as text quoted element by element."""
INSERT_MISSING_ENTRIES = INSERT_ENTRIES + "ON CONFLICT (workflow_id) DO NOTHING"


def _insert_entries_postgresql(
    connection: Connection, candidates: list[Candidate], now: datetime, sweep_date: date
) -> list[str]:
    """Insert the entries not recorded yet; the workflow IDs that may have been (all of a
    journey's when any was)."""
    earlier: list[str] = []
    for journey in dict.fromkeys(JOURNEY_OF[c.kind] for c in candidates):  # a page: one
        ours = [c for c in candidates if JOURNEY_OF[c.kind] == journey]
        ids = [c.workflow_id for c in ours]
        entries = {
            "workflow_id": ids,
            "customer_id": [c.customer_id for c in ours],
            "segment": [c.segment for c in ours],
            "journey": journey,
            "entered_at": now,
            "sweep_date": sweep_date,
        }
        try:
            # All new, as on the day's first sweep: a plain insert costs less than one
            # that first looks for a conflict on every row.
            connection.exec_driver_sql(INSERT_ENTRIES, entries)
        except IntegrityError as err:
            if not isinstance(err.orig, UniqueViolation):
                raise
            # A second run of the day (the statement, alone, left nothing behind).
            connection.exec_driver_sql(INSERT_MISSING_ENTRIES, entries)
            earlier += ids
    return earlier


def _insert_entries_sqlite(
    connection: Connection, candidates: list[Candidate], now: datetime, sweep_date: date
) -> list[str]:
    """Insert the entries not recorded yet; the workflow IDs that were."""
    table = cast(Table, JourneyEntry.__table__)
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["workflow_id"])
        .returning(table.c.workflow_id)
    )
    rows = [
        {
            "workflow_id": c.workflow_id,
            "customer_id": c.customer_id,
            "journey": JOURNEY_OF[c.kind],
            "segment": c.segment,
            "entered_at": now,
            "sweep_date": sweep_date,
        }
        for c in candidates
    ]
    inserted = set(connection.execute(statement, rows).scalars())
    return [c.workflow_id for c in candidates if c.workflow_id not in inserted]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def average_gap_s(session: Session) -> float | None:
    """The shop's average time between a customer's orders, in seconds, over the customers
    with two orders or more; None when there are none.

    O(customers): the one aggregate of the sweep that reads every repeat buyer, once per
    sweep, and only with ``[win_back] cadence_factor`` set.
    """
    span: Any
    if _dialect(session) == "postgresql":
        span = func.extract("epoch", Customer.last_order_at - Customer.first_order_at)
    else:
        span = (
            func.julianday(Customer.last_order_at) - func.julianday(Customer.first_order_at)
        ) * 86400
    average = session.scalar(
        select(func.avg(span / (Customer.orders_count - 1))).where(Customer.orders_count >= 2)
    )
    return float(average) if average is not None else None


def _skip_reason(
    email: str | None, consent: bool, suppressed: str | None, candidate: Candidate, now: datetime
) -> str | None:
    """Why the journey would be stopped by the send guard anyway: not started."""
    if not email:
        return "no_email"
    if not consent:
        return "no_consent"
    if suppressed:
        return f"suppressed:{suppressed}"
    if candidate.day_ends_at is not None and candidate.day_ends_at <= now:
        return "day_over"  # a late sweep: a greeting the day after is no greeting
    return None
