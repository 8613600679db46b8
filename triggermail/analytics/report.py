"""``triggermail report``: what each journey, step and variant sent, reached and earned.

Read from the store alone (the ledger, SendGrid's webhook events, orders, carts and
suppressions); Temporal is never asked. The figures, per journey, step and variant:

* **entered** — journey entries with a ledger row for the step. An entry is one
  ``(workflow ID, entry event)`` pair: the ledger's idempotency key without its step. A
  journey that ended before its first e-mail was due (a purchase within the first 30
  minutes of an abandoned cart, an emptied cart) leaves no row, so it is not counted:
  *entered* means "reached its first e-mail", sent or skipped. An entry belongs to the
  period its first e-mail was due in. The journey's own row counts every entry once.
* **sent** — rows ``sent``; **delivered / opened / clicked** — sent e-mails with at least
  one such SendGrid event (unique, not total, opens and clicks);
  **unsubscribed** — e-mails that led to an unsubscribe or spam complaint (our one-click
  link or SendGrid's webhook).
* **converted** — entries whose customer completed an order after the entry began and
  at the latest ``click_window`` after the journey's last planned e-mail (entry begins at
  the first row's due time minus the step's offset from the config's timings). For the
  journeys that end on purchase an order before the last planned e-mail is the purchase
  exit; the tail gives the last e-mail (often an incentive) the same chance as the others.
  Entries still inside their window count as not converted yet.
* **conversion rate** — converted / entered, with a 95 % Wilson score interval.
* **revenue** — orders credited to the step's e-mails by :mod:`triggermail.analytics.attribution`,
  per currency, for orders placed in the period (whenever the e-mail went).
* **lift** — conversion rate of mailed entries over that of the holdout (entries whose
  ledger rows are ``skipped`` with reason ``holdout``), minus one; only on the journey's
  row and its first step's rows, where the two groups are alike. "—" without a holdout.
* **recovery rate** (abandoned cart) — carts that entered (the customer's cart last
  changed before the first e-mail was due) and were then ordered (``Cart.status`` is
  ``ordered`` and the entry converted), over carts that entered.
* **retention** — customers who completed an order in the period just before this one
  (as long as this one) and again in this one, over customers who ordered in the previous.

Rows are read by the time the journey asked for them (``due_at``, else ``created_at``)
through ``ix_email_sends_due_at``; everything else goes through existing indexes too.

The report's models are in :mod:`triggermail.analytics.report_models`; the tables, the
HTML file and its charts in :mod:`triggermail.analytics.report_display`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triggermail.analytics.attribution import CHUNK, Attributed, asked_between, attribute_orders
from triggermail.analytics.report_models import (
    FUNNEL,
    HOLDOUT,
    Funnel,
    Interval,
    JourneyReport,
    Orders,
    Recovery,
    Report,
    Retention,
    Row,
    Windows,
)
from triggermail.journeys import JourneysConfig
from triggermail.store import Cart, EmailEvent, EmailSend, Order, Suppression
from workflows import registry

Z95 = 1.959963984540054
"""The standard normal quantile of 97.5 %: a two-sided 95 % interval."""
DEFAULT_REACH = timedelta(days=30)
"""How long a journey the config does not know (a retired one) may run after entry."""
UNSUBSCRIBES = ("unsubscribed", "spamreport")
_STAGES = {
    "delivered": ("delivered",),
    "open": ("delivered", "opened"),
    "click": ("delivered", "opened", "clicked"),
}
"""Funnel stages an event proves reached: a click is an open whose pixel was blocked."""


# -- statistics ----------------------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None for no trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def _rate(successes: int, trials: int) -> tuple[float | None, Interval | None]:
    ci = wilson(successes, trials)
    if ci is None:
        return None, None
    return successes / trials, Interval(low=ci[0], high=ci[1])


# -- reading the store ---------------------------------------------------------------------


@dataclass
class _Send:
    id: str
    journey: str
    step: str
    variant: str
    status: str
    reason: str | None
    at: datetime
    """When the journey asked for it (``due_at``; ``created_at`` on rows older than that)."""


@dataclass
class _Entry:
    key: str
    journey: str
    customer_id: str
    rows: list[_Send] = field(default_factory=list)
    start: datetime | None = None
    window_end: datetime | None = None
    converted: bool = False

    @property
    def holdout(self) -> bool:
        # Any row: a holdout entry a guard stopped first (an order the exit signal missed)
        # is still the holdout's, as the same entry mailed would be the mailed group's.
        return any(r.variant == HOLDOUT for r in self.rows)


@dataclass
class _Tally:
    entries: set[str] = field(default_factory=set)
    converted: set[str] = field(default_factory=set)
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    orders: int = 0
    revenue: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, other: _Tally) -> None:
        self.entries |= other.entries
        self.converted |= other.converted
        self.sent += other.sent
        self.delivered += other.delivered
        self.opened += other.opened
        self.clicked += other.clicked
        self.unsubscribed += other.unsubscribed
        self.orders += other.orders
        for currency, amount in other.revenue.items():
            self.revenue[currency] += amount


def build_report(
    session: Session,
    config: JourneysConfig,
    *,
    since: datetime,
    until: datetime,
    journey: str | None = None,
) -> Report:
    """The report of ``[since, until]`` (``journey``: that journey only)."""
    rules = config.attribution
    tail = rules.click_window
    # A capped e-mail may be written up to max_deferral after its due time.
    reach = max(_horizon(config, name) for name in config.journey_names()) + max(
        config.guardrails.max_deferral, DEFAULT_REACH
    )
    entries = _entries(session, since=since, until=until, reach=reach, journey=journey)
    for entry in entries.values():
        _plan(entry, config, tail)
    _conversions(session, list(entries.values()))
    sends = {row.id: (entry, row) for entry in entries.values() for row in entry.rows}
    events = _events(session, [sid for sid, (_, r) in sends.items() if r.status == "sent"])
    unsubscribed = _unsubscribed(session, entries.values(), set(sends))
    attributed = attribute_orders(session, since=since, until=until, rules=rules)

    tallies: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    holdouts: dict[str, _Tally] = defaultdict(_Tally)
    funnels: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FUNNEL, 0))
    for entry in entries.values():
        if entry.holdout:
            holdouts[entry.journey].entries.add(entry.key)
            if entry.converted:
                holdouts[entry.journey].converted.add(entry.key)
            continue
        reached = {"entered", *(["converted"] if entry.converted else [])}
        for row in entry.rows:
            if row.status == "sent":
                reached.add("sent")
                for kind in events.get(row.id, ()):
                    reached.update(_STAGES[kind])
        for stage in reached:
            funnels[entry.journey][stage] += 1
        for row in entry.rows:
            tally = tallies[(entry.journey, row.step, row.variant)]
            tally.entries.add(entry.key)
            if entry.converted:
                tally.converted.add(entry.key)
            if row.status == "sent":
                tally.sent += 1
                kinds = events.get(row.id, set())
                tally.delivered += "delivered" in kinds
                tally.opened += "open" in kinds
                tally.clicked += "click" in kinds
            tally.unsubscribed += row.id in unsubscribed
    for order in attributed:
        if journey is not None and order.journey != journey:
            continue
        tally = tallies[(order.journey, order.step, order.variant)]
        tally.orders += 1
        tally.revenue[order.currency] += order.revenue

    names = _ordered(config, {key[0] for key in tallies} | set(holdouts))
    journeys = []
    for name in names:
        keys = [key for key in tallies if key[0] == name]
        steps = _step_order(config, name, {key[1] for key in keys})
        total = _Tally()
        for key in keys:
            total.add(tallies[key])
        holdout = holdouts.get(name)
        holdout_rate = (
            len(holdout.converted) / len(holdout.entries) if holdout and holdout.entries else None
        )
        rows = []
        for position, step in enumerate(steps):
            variants = sorted(
                (key[2] for key in keys if key[1] == step), key=lambda v: (v != "control", v)
            )
            for variant in variants:
                rows.append(
                    _row(
                        name,
                        step,
                        variant,
                        tallies[(name, step, variant)],
                        holdout_rate if position == 0 else None,
                    )
                )
        journeys.append(
            JourneyReport(
                journey=name,
                total=_row(name, None, None, total, holdout_rate),
                funnel=Funnel(**funnels[name]),
                holdout=_row(name, None, HOLDOUT, holdout, None) if holdout else None,
                steps=rows,
                recovery=(
                    _recovery(session, [e for e in entries.values() if e.journey == name])
                    if name in registry.BY_NAME and registry.BY_NAME[name].report_recovery
                    else None
                ),
            )
        )
    return Report(
        generated_at=until,
        since=since,
        until=until,
        attribution=Windows(
            click_window_s=rules.click_window.total_seconds(),
            open_window_s=rules.open_window.total_seconds(),
            open_tracking=rules.open_tracking,
        ),
        journeys=journeys,
        orders=_orders(session, since, until, attributed),
        retention=_retention(session, since, until),
    )


def _row(
    journey: str, step: str | None, variant: str | None, tally: _Tally, holdout_rate: float | None
) -> Row:
    entered, converted = len(tally.entries), len(tally.converted)
    rate, ci = _rate(converted, entered)
    lift = None
    if rate is not None and holdout_rate:
        lift = rate / holdout_rate - 1
    return Row(
        journey=journey,
        step=step,
        variant=variant,
        entered=entered,
        sent=tally.sent,
        delivered=tally.delivered,
        opened=tally.opened,
        clicked=tally.clicked,
        converted=converted,
        conversion_rate=rate,
        conversion_ci=ci,
        attributed_orders=tally.orders,
        revenue=_money(tally.revenue),
        unsubscribed=tally.unsubscribed,
        lift=lift,
    )


def _money(amounts: dict[str, Decimal]) -> dict[str, str]:
    return {
        currency: str(amount.quantize(Decimal("0.01")))
        for currency, amount in sorted(amounts.items())
        if amount
    }


def _horizon(config: JourneysConfig, name: str) -> timedelta:
    journey = getattr(config, name, None)
    return journey.horizon() if journey is not None else DEFAULT_REACH


def _ordered(config: JourneysConfig, names: Iterable[str]) -> list[str]:
    known = config.journey_names()
    return sorted(names, key=lambda n: (known.index(n) if n in known else len(known), n))


def _step_order(config: JourneysConfig, journey: str, steps: Iterable[str]) -> list[str]:
    configured = getattr(config, journey, None)
    known = [step.name for step in configured.steps] if configured is not None else []
    return sorted(steps, key=lambda s: (known.index(s) if s in known else len(known), s))


def _entries(
    session: Session, *, since: datetime, until: datetime, reach: timedelta, journey: str | None
) -> dict[str, _Entry]:
    """Entries whose first row was written in ``[since, until]``, with all their rows.

    Rows from ``reach`` (the longest journey) before ``since`` are read, so an entry that
    began before the period is recognised by its earlier first row and left out.
    """
    query = select(
        EmailSend.id,
        EmailSend.idempotency_key,
        EmailSend.customer_id,
        EmailSend.journey,
        EmailSend.step,
        EmailSend.variant,
        EmailSend.status,
        EmailSend.reason,
        func.coalesce(EmailSend.due_at, EmailSend.created_at).label("at"),
    ).where(asked_between(since - reach, until))
    if journey is not None:
        query = query.where(EmailSend.journey == journey)
    entries: dict[str, _Entry] = {}
    for row in session.execute(query):
        # The key is "<workflow id>/<entry event>/<step>": one entry per workflow and event.
        key = row.idempotency_key.rsplit("/", 1)[0]
        entry = entries.setdefault(key, _Entry(key, row.journey, row.customer_id))
        variant = HOLDOUT if row.status == "skipped" and row.reason == HOLDOUT else row.variant
        entry.rows.append(
            _Send(row.id, row.journey, row.step, variant, row.status, row.reason, row.at)
        )
    kept = {}
    for key, entry in entries.items():
        entry.rows.sort(key=lambda r: (r.at, r.id))
        if since <= entry.rows[0].at <= until:
            kept[key] = entry
    return kept


def _plan(entry: _Entry, config: JourneysConfig, tail: timedelta) -> None:
    """When the entry began and until when an order counts as its conversion."""
    configured = getattr(config, entry.journey, None)
    first = entry.rows[0]
    if configured is None:
        entry.start = first.at
        entry.window_end = entry.rows[-1].at + tail
        return
    offset, offsets = timedelta(), {}
    # A timing variant moves its step, and every later one, by its own ``after``.
    variant_of = {row.step: row.variant for row in entry.rows}
    for step in configured.steps:
        chosen = step.variant(variant_of.get(step.name, "control"))
        offset += chosen.after if chosen is not None and chosen.after is not None else step.after
        offsets[step.name] = offset
    entry.start = first.at - offsets.get(first.step, timedelta())
    entry.window_end = max(entry.start + configured.horizon(), entry.rows[-1].at) + tail


def _conversions(session: Session, entries: Sequence[_Entry]) -> None:
    """Mark the entries whose customer completed an order inside their window."""
    if not entries:
        return
    by_customer: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_customer[entry.customer_id].append(entry)
    earliest = min(e.start for e in entries if e.start is not None)
    latest = max(e.window_end for e in entries if e.window_end is not None)
    customers = sorted(by_customer)
    for start in range(0, len(customers), CHUNK):
        orders = session.execute(
            select(Order.customer_id, Order.placed_at).where(
                Order.customer_id.in_(customers[start : start + CHUNK]),
                Order.status == "completed",
                Order.placed_at > earliest,
                Order.placed_at <= latest,
            )
        )
        for customer_id, placed_at in orders:
            assert customer_id is not None
            for entry in by_customer[customer_id]:
                assert entry.start is not None and entry.window_end is not None
                # Strictly after the start: the order a post-purchase journey enters on is
                # not its own conversion.
                if entry.start < placed_at <= entry.window_end:
                    entry.converted = True


def _events(session: Session, send_ids: Sequence[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for start in range(0, len(send_ids), CHUNK):
        rows = session.execute(
            select(EmailEvent.send_id, EmailEvent.event)
            .where(
                EmailEvent.send_id.in_(send_ids[start : start + CHUNK]),
                EmailEvent.event.in_(("delivered", "open", "click")),
            )
            .distinct()
        )
        for send_id, kind in rows:
            assert send_id is not None
            out[send_id].add(kind)
    return out


def _unsubscribed(session: Session, entries: Iterable[_Entry], send_ids: set[str]) -> set[str]:
    """The e-mails that led to an unsubscribe or complaint (suppressions name their e-mail)."""
    customers = sorted({entry.customer_id for entry in entries})
    out: set[str] = set()
    for start in range(0, len(customers), CHUNK):
        rows = session.scalars(
            select(Suppression.send_id).where(
                Suppression.customer_id.in_(customers[start : start + CHUNK]),
                Suppression.reason.in_(UNSUBSCRIBES),
                Suppression.send_id.is_not(None),
            )
        )
        out.update(send_id for send_id in rows if send_id in send_ids)
    return out


def _recovery(session: Session, entries: Sequence[_Entry]) -> Recovery:
    """Carts that entered the abandoned-cart journey, and those then ordered."""
    mailed = [entry for entry in entries if not entry.holdout]
    customers = sorted({entry.customer_id for entry in mailed})
    carts: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    if mailed:
        earliest = min(e.start for e in mailed if e.start is not None)
        latest = max(e.rows[0].at for e in mailed)
        for start in range(0, len(customers), CHUNK):
            rows = session.execute(
                select(Cart.customer_id, Cart.last_activity_at, Cart.id, Cart.status).where(
                    Cart.customer_id.in_(customers[start : start + CHUNK]),
                    Cart.last_activity_at >= earliest - timedelta(days=1),
                    Cart.last_activity_at <= latest,
                )
            )
            for customer_id, at, cart_id, status in rows:
                assert customer_id is not None
                carts[customer_id].append((at, cart_id, status))
    entered: set[str] = set()
    recovered: set[str] = set()
    for entry in mailed:
        first = entry.rows[0].at
        # The cart the journey was about: the customer's cart last changed before its
        # first e-mail was due. The ledger does not name it.
        before = [cart for cart in carts.get(entry.customer_id, []) if cart[0] <= first]
        cart = max(before) if before else None
        key = cart[1] if cart else entry.key
        entered.add(key)
        if entry.converted and (cart is None or cart[2] == "ordered"):
            recovered.add(key)
    rate, ci = _rate(len(recovered), len(entered))
    return Recovery(carts_entered=len(entered), carts_recovered=len(recovered), rate=rate, ci=ci)


def _orders(
    session: Session, since: datetime, until: datetime, attributed: Sequence[Attributed]
) -> Orders:
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    count = 0
    rows = session.execute(
        select(Order.revenue, Order.total, Order.currency).where(
            Order.status == "completed", Order.placed_at >= since, Order.placed_at <= until
        )
    )
    for order_revenue, total, currency in rows:
        count += 1
        value = order_revenue if order_revenue is not None else total
        revenue[currency or ""] += Decimal(value or 0)
    credited: dict[str, Decimal] = defaultdict(Decimal)
    for order in attributed:
        credited[order.currency] += order.revenue
    return Orders(
        orders=count,
        revenue=_money(revenue),
        attributed_orders=len(attributed),
        attributed_revenue=_money(credited),
    )


def _retention(session: Session, since: datetime, until: datetime) -> Retention:
    previous_since = since - (until - since)

    def buyers(start: datetime, end: datetime, *, inclusive: bool) -> set[str]:
        upper = Order.placed_at <= end if inclusive else Order.placed_at < end
        return {
            customer_id
            for customer_id in session.scalars(
                select(Order.customer_id)
                .where(
                    Order.status == "completed",
                    Order.customer_id.is_not(None),
                    Order.placed_at >= start,
                    upper,
                )
                .distinct()
            )
            if customer_id is not None
        }

    previous = buyers(previous_since, since, inclusive=False)
    returning = previous & buyers(since, until, inclusive=True)
    rate, ci = _rate(len(returning), len(previous))
    return Retention(
        previous_since=previous_since,
        previous_until=since,
        previous_customers=len(previous),
        returning_customers=len(returning),
        rate=rate,
        ci=ci,
    )
