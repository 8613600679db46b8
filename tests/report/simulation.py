"""A simulated shop whose customers behave by stated probabilities, run through the real
journeys; then the report is held against the rates those probabilities imply.

Everything between the customers and the report is production code: the HTTP intake
(Segment ``identify``/``track`` calls in ``/v1/batch``), the journeys and the worker's
activities (guards, ledger, rendering, the SendGrid transport) on the time-skipping
server, SendGrid's signed Event Webhook at ``/webhooks/sendgrid``, and
:func:`triggermail.analytics.report.build_report`. Only SendGrid's API is a fake on loopback
(:class:`tests.fakes.sendgrid.FakeSendGrid`); the customers read what it received.

The shop (``simulated_shop.toml``) has four journeys, and each customer belongs to one
entry group, so no customer's orders count for two journeys by accident:

* **welcome**: signs up (``identify`` with consent) and gets the welcome series;
* **abandoned cart**: a known customer (identified long ago) adds a product and leaves;
* **browse abandonment**: a known customer views a product and leaves;
* **post-purchase**: every order above starts one; a repeat order starts the next.

Each e-mail is delivered; its reader opens it with ``open``, clicks with ``click`` once
opened, and orders with ``buy_clicked``, ``buy_opened`` or ``buy_unopened``
(:class:`Reaction`, per journey, step and variant) — at most once per journey entry, and
before the journey's next e-mail is due. Cart and browse customers may order before their
first e-mail (``early_order``): the report does not count those as entered. Holdout
customers, never mailed, order with ``holdout_order`` some time after their first e-mail
would have gone.

The truth each report row must contain in its joint 95 % interval (:func:`simultaneous`)
follows from the report's definitions (docs/report.md): an entry *converted* when its
customer ordered after it began and within the journey's window, which the simulated
orders always are. So an entry that reached step ``k`` of a journey that ends on purchase
converts with ``1 - prod(1 - buy_j for j >= k)`` (it has not bought before ``k``, or ``k``
would not have come), and an entry of one that does not (welcome, post-purchase) with
``1 - prod(1 - buy_j)`` — ``buy_j`` being the step's :attr:`Reaction.buy` for the
customer's variant. A row's true rate is the mean over the entries it counts.
Open rate (opened / sent) is ``open`` and click rate (clicked / sent) ``open * click``;
the report gives counts, so their own 95 % intervals are Wilson intervals of those counts
(their joint intervals are exact, as every rate's are).

The report converts an entry on *any* order of its customer inside the entry's window,
whichever journey brought it; the truth counts the one its own e-mails (or its holdout
draw) brought. They agree because every way a simulated customer orders is one of: an
early order (before the first e-mail: no entry), an order after a mailed step, a holdout's
order, or a cross-sell's repeat order. Each customer enters one of welcome, cart and
browse, at most once, so the first three give a customer one order; every repeat order
comes after it, when each entry still open has already converted, and starts its own
post-purchase entry. :meth:`Simulation.unaccounted` checks this entry by entry.

Every random draw is seeded by the run's seed and the e-mail's (or customer's) own key,
never by arrival order, and customers are the same ids every run (``sim-00042``, which
the holdout and the variants are hashed on): the same seed gives the same run. So one
run per Temporal server: a welcome and an order's journeys take their IDs once ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from starter.routing import ENDS_ON_PURCHASE
from tests.fakes.sendgrid import FakeSendGrid
from tests.guardrails.conftest import PUBLIC_KEY, shop_api
from tests.guardrails.test_sendgrid_webhook import signed
from tests.harness import Shop
from tests.pii import history_text, personal_data_in
from triggermail.analytics.report import build_report, wilson
from triggermail.analytics.report_models import Report
from triggermail.ids import abandoned_cart_id, browse_abandonment_id, post_purchase_id, welcome_id
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Customer, EmailSend

CONFIG = Path(__file__).with_name("simulated_shop.toml")
WRITE_KEY = "simulated-shop"
GRID = timedelta(hours=1)
"""The customers act on this grid (an order before the first e-mail apart): the fewer
times the clock stops, the faster the run."""
JOURNEYS = ("welcome", "abandoned_cart", "browse_abandonment", "post_purchase")
PRODUCTS = [
    {"product_id": "tee-organic", "name": "Organic T-shirt", "price": 24.9, "category": "Tops"},
    {"product_id": "mug-blue", "name": "Blue mug", "price": 12.5, "category": "Kitchen"},
    {"product_id": "socks-wool", "name": "Wool socks", "price": 9.9, "category": "Socks"},
    {"product_id": "bag-canvas", "name": "Canvas bag", "price": 34.0, "category": "Bags"},
    {"product_id": "cap-linen", "name": "Linen cap", "price": 19.0, "category": "Tops"},
]
RowKey = tuple[str, str | None, str | None]
"""A report row: (journey, step, variant); step None is the journey's, variant "holdout"."""
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dan", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun"]


# -- the stated behaviour ------------------------------------------------------------------


@dataclass(frozen=True)
class Reaction:
    """What a customer does with one e-mail of a journey step (and variant)."""

    open: float
    """Opens it (once delivered)."""
    click: float
    """Clicks a link in it, once opened."""
    buy_clicked: float
    """Orders, having clicked."""
    buy_opened: float
    """Orders, having opened and not clicked."""
    buy_unopened: float
    """Orders without opening it (the e-mail reminded them all the same)."""

    @property
    def buy(self) -> float:
        """Orders after this e-mail, whatever they did with it."""
        opened = self.open * (1 - self.click) * self.buy_opened
        clicked = self.open * self.click * self.buy_clicked
        return clicked + opened + (1 - self.open) * self.buy_unopened


@dataclass(frozen=True)
class Behaviour:
    groups: Mapping[str, float]
    """Share of the customers entering each journey (post-purchase: every order)."""
    reactions: Mapping[tuple[str, str, str], Reaction]
    """By (journey, step, variant)."""
    early_order: Mapping[str, float]
    """Orders before the journey's first e-mail (so never counts as entered)."""
    holdout_order: Mapping[str, float]
    """A holdout customer orders anyway, after their first e-mail would have gone."""
    waves: int = 12
    """Customers arrive in this many waves…"""
    wave_every: timedelta = timedelta(hours=8)
    """…this far apart (fewer journeys asleep at once, as in a shop)."""

    def reaction(self, journey: str, step: str, variant: str) -> Reaction:
        return (
            self.reactions.get((journey, step, variant))
            or self.reactions[(journey, step, "control")]
        )


STATED = Behaviour(
    groups={"welcome": 0.25, "abandoned_cart": 0.45, "browse_abandonment": 0.30},
    reactions={
        ("welcome", "welcome", "control"): Reaction(0.60, 0.30, 0.20, 0.05, 0.01),
        ("welcome", "discover", "control"): Reaction(0.45, 0.25, 0.12, 0.03, 0.005),
        ("abandoned_cart", "reminder", "control"): Reaction(0.45, 0.30, 0.35, 0.10, 0.03),
        ("abandoned_cart", "reminder", "urgent"): Reaction(0.55, 0.35, 0.35, 0.10, 0.03),
        ("abandoned_cart", "incentive", "control"): Reaction(0.40, 0.35, 0.40, 0.12, 0.02),
        ("abandoned_cart", "incentive", "fifteen"): Reaction(0.40, 0.40, 0.50, 0.15, 0.03),
        ("browse_abandonment", "viewed", "control"): Reaction(0.35, 0.25, 0.20, 0.05, 0.01),
        ("browse_abandonment", "viewed", "later"): Reaction(0.40, 0.25, 0.25, 0.06, 0.01),
        ("browse_abandonment", "offer", "control"): Reaction(0.35, 0.30, 0.25, 0.06, 0.01),
        ("post_purchase", "thank_you", "control"): Reaction(0.70, 0.10, 0.0, 0.0, 0.0),
        ("post_purchase", "cross_sell", "control"): Reaction(0.40, 0.20, 0.25, 0.05, 0.01),
    },
    early_order={"abandoned_cart": 0.10, "browse_abandonment": 0.05},
    holdout_order={"welcome": 0.04, "abandoned_cart": 0.05, "browse_abandonment": 0.03},
)
"""The behaviour ``bench/simulate.py`` and the suite's small run simulate."""


def simulated_journeys() -> JourneysConfig:
    return load_journeys(CONFIG)


# -- what the customers did ----------------------------------------------------------------


@dataclass
class Mail:
    """One e-mail a customer received, and what they did with it."""

    send_id: str
    customer_id: str
    journey: str
    step: str
    variant: str
    entry: str
    """The journey entry: the ledger's idempotency key without the step (as the report)."""
    sent_at: datetime
    opened: bool = False
    clicked: bool = False
    bought: bool = False


@dataclass
class Entry:
    journey: str
    customer_id: str
    steps: list[str]
    """The variant of every step the customer gets (or would, if it came)."""
    mails: list[Mail] = field(default_factory=list)
    bought: bool = False


@dataclass
class Order:
    customer_id: str
    order_id: str
    at: datetime


@dataclass
class Truth:
    """One report row as the customers lived it."""

    chances: list[float] = field(default_factory=list)
    """Each entry's chance to convert, from the stated behaviour."""
    converted: int = 0
    """Entries whose customer did order."""
    mails: list[Mail] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """The true conversion rate: the mean of the entries' chances."""
        return sum(self.chances) / len(self.chances)


@dataclass(frozen=True)
class Check:
    """One rate of the report against the truth."""

    metric: str
    true: float
    reported: float | None
    low: float | None
    high: float | None
    """The rate's interval at the run's family-wise 95 % (:func:`simultaneous`)."""
    n: int
    low95: float | None = None
    high95: float | None = None
    """The rate's own 95 % interval: the report's, or Wilson's of its counts."""

    @property
    def within(self) -> bool:
        return _inside(self.true, self.low, self.high) and self.reported is not None

    @property
    def within_95(self) -> bool:
        return _inside(self.true, self.low95, self.high95) and self.reported is not None


def _inside(value: float, low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and low - 1e-12 <= value <= high + 1e-12


def simultaneous(checks: list[Check], *, confidence: float = 0.95) -> list[Check]:
    """The checks with Bonferroni intervals: each rate's exact (Clopper-Pearson) interval
    at ``1 - (1 - confidence) / len(checks)``, so a correct report has every true rate
    inside its interval in at least ``confidence`` of runs. At 95 % per rate, ~40 rates
    would leave about two outside in an average run, and "all within" would fail most
    runs of a correct report.

    Exact, not Wilson's: at Bonferroni's level (0.06 % a side for 41 rates) Wilson's
    interval is far too narrow on the low side of a small rate in a small row (2 of 8
    customers at a true 3 % happens 2.2 % of the time, and Wilson's joint interval of
    2 of 8 leaves 3 % out), so a correct report of a 300-customer shop failed about one
    run in ten. The exact interval leaves a rate out only when its counts are at least
    that unlikely. A row's true rate is the mean of its entries' chances; a count of
    unequal chances has tails no heavier than the binomial of their mean beyond one of
    the mean (Hoeffding, 1956), so its interval holds for it too."""
    alpha = (1 - confidence) / max(len(checks), 1)
    out = []
    for check in checks:
        interval = (
            exact(round(check.reported * check.n), check.n, alpha=alpha)
            if check.reported is not None and check.n > 0
            else None
        )
        out.append(
            replace(
                check,
                low=interval[0] if interval else None,
                high=interval[1] if interval else None,
                low95=check.low,
                high95=check.high,
            )
        )
    return out


def exact(successes: int, trials: int, *, alpha: float) -> tuple[float, float]:
    """The Clopper-Pearson interval of a proportion at ``1 - alpha``: the rates ``p`` under
    which neither ``successes`` or more nor ``successes`` or fewer of ``trials`` has a
    chance below ``alpha / 2``."""

    def solve(rising: bool, target: float, chance: Callable[[float], float]) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            if (chance(middle) < target) == rising:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    low = (
        0.0 if successes == 0 else solve(True, alpha / 2, lambda p: _at_least(successes, trials, p))
    )
    high = (
        1.0
        if successes >= trials
        else solve(False, alpha / 2, lambda p: 1 - _at_least(successes + 1, trials, p))
    )
    return low, high


def _at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed from the side where the terms shrink."""
    if k <= 0 or p >= 1:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if k > n * p:
        return min(1.0, _binomial_sum(k, n, p, upward=True))
    return max(0.0, 1 - _binomial_sum(k - 1, n, p, upward=False))


def _binomial_sum(k: int, n: int, p: float, *, upward: bool) -> float:
    """The binomial probabilities from ``k`` up to ``n`` (or down to 0), added while they
    still count: ``k`` lies beyond the mean in that direction, so each term is smaller
    than the last."""
    q = 1 - p
    term = math.exp(
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    total = 0.0
    while term > total * 1e-17 and 0 <= k <= n:
        total += term
        if upward:
            term *= (n - k) / (k + 1) * p / q
            k += 1
        else:
            term *= k / (n - k + 1) * q / p
            k -= 1
    return total


@dataclass(frozen=True)
class Count:
    """A count the report must give exactly (who entered, what was sent)."""

    metric: str
    true: int
    reported: int


@dataclass
class Outcome:
    customers: int
    checks: list[Check]
    counts: list[Count]
    report: Report
    mails: int
    orders: int
    late_mail: list[str]
    """E-mails of a journey that ends on purchase that arrived after the customer's order,
    and e-mails to holdout customers (should be none)."""
    wrong_variant: list[str]
    """E-mails whose ledger variant is not the customer's assignment (should be none)."""
    unaccounted: list[str] = field(default_factory=list)
    """Entries whose customer ordered inside the entry's conversion window without the
    truth counting an order for it, or the other way round (should be none)."""

    @property
    def max_abs_err(self) -> float:
        return max(
            (abs(c.reported - c.true) for c in self.checks if c.reported is not None),
            default=0.0,
        )

    @property
    def all_within_ci(self) -> bool:
        return (
            all(c.within for c in self.checks)
            and all(c.true == c.reported for c in self.counts)
            and not self.late_mail
            and not self.wrong_variant
            and not self.unaccounted
        )

    @property
    def expected_misses(self) -> float:
        """How many of the checks' own 95 % intervals a correct report misses on average."""
        return 0.05 * len(self.checks)

    @property
    def misses_95(self) -> int:
        return sum(not check.within_95 for check in self.checks)


# -- the shop ------------------------------------------------------------------------------


class SimulatedShop(Shop):
    """The test harness's shop, with no send-rate limit and a cheaper goodbye.

    Thousands of journeys: the personal-data scan of the histories reads a sample, and the
    journeys (all closed by the end of a run, each ended by its last e-mail, an order or
    its holdout) are terminated concurrently in case one is not.
    """

    SAMPLE = 12

    def __init__(
        self, env: WorkflowEnvironment, database_url: str, tmp_path: Path, sendgrid_url: str
    ) -> None:
        super().__init__(
            env,
            database_url,
            tmp_path,
            journeys=simulated_journeys(),
            sendgrid_url=sendgrid_url,
            enabled=JOURNEYS,
            welcome=True,
        )
        self.settings = self.settings.model_copy(
            update={
                "sends_per_second": 0,
                "write_key": SecretStr(WRITE_KEY),
                "sendgrid_webhook_public_key": PUBLIC_KEY,
            }
        )
        self.workflow_ids: set[str] = set()

    async def _personal_data_in_histories(self) -> dict[str, list[str]]:
        """A sample of the histories, scanned for every customer's address and name."""
        with self.sessions() as session:
            customers = list(session.scalars(select(Customer)))
        emails = sorted({c.email for c in customers if c.email})
        names = sorted({n for c in customers for n in (c.first_name, c.last_name) if n})
        ids = sorted(self.workflow_ids)
        leaks = {}
        for workflow_id in random.Random(0).sample(ids, min(self.SAMPLE, len(ids))):
            try:
                history = await self.handle(workflow_id).fetch_history()
            except RPCError:
                continue  # not found: nothing to scan
            found = personal_data_in(history_text(history), emails=emails, names=names)
            if found:
                leaks[workflow_id] = found
        return leaks

    async def __aexit__(self, *exc: Any) -> None:
        ids = sorted(self.workflow_ids)
        leaks = await self._personal_data_in_histories()
        assert self.worker is not None
        await self.worker.__aexit__(*exc)

        async def terminate(workflow_id: str) -> None:
            with contextlib.suppress(RPCError):  # closed, as it should be
                await self.handle(workflow_id).terminate("simulation over")

        for start in range(0, len(ids), 200):
            await asyncio.gather(*(terminate(i) for i in ids[start : start + 200]))
        self.executor.shutdown(wait=True)
        self.engine.dispose()
        assert not leaks, f"personal data in workflow histories: {leaks}"


# -- the simulation ------------------------------------------------------------------------


class Simulation:
    """Customers who act on what the fake SendGrid received, on the server's clock."""

    def __init__(
        self,
        shop: SimulatedShop,
        http: httpx.AsyncClient,
        sendgrid: FakeSendGrid,
        *,
        customers: int,
        seed: int,
        behaviour: Behaviour = STATED,
    ) -> None:
        self.shop, self.http, self.sendgrid = shop, http, sendgrid
        self.config = shop.journeys
        self.behaviour = behaviour
        self.seed = seed
        self.customers = customers
        self.start: datetime | None = None
        self.now = datetime.min
        self.agenda: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.wake: set[datetime] = set()
        self._sequence = itertools.count()
        self._seen = 0
        self.mails: dict[str, Mail] = {}
        self.entries: dict[str, Entry] = {}
        self.holdouts: dict[str, list[str]] = defaultdict(list)
        """Customers held out of each journey who reached its first e-mail's time."""
        self.holdout_buyers: dict[str, set[str]] = defaultdict(set)
        self.orders: list[Order] = []
        self.group: dict[str, str] = {}
        self.entered_at: dict[tuple[str, str], datetime] = {}
        self.wrong_variant: list[str] = []
        self._orders_of: dict[str, int] = defaultdict(int)
        """Orders planned per customer: names each order, whatever the arrival order of the
        e-mails that led to them, so the same seed gives the same ledger keys and draws."""

    # -- randomness fixed by keys ----------------------------------------------------------

    def rng(self, *key: str) -> random.Random:
        """Draws fixed by the seed and ``key``."""
        return random.Random("\x1f".join((str(self.seed), *key)))

    def on_grid(self, when: datetime) -> datetime:
        assert self.start is not None
        steps = -(-(when - self.start) // GRID)
        return self.start + steps * GRID

    def at(
        self, when: datetime, kind: str, payload: dict[str, Any], *, exact: bool = False
    ) -> None:
        when = when if exact else self.on_grid(when)
        heapq.heappush(self.agenda, (when, next(self._sequence), kind, payload))

    def expect_mails(self, journey: str, customer_id: str, from_: datetime) -> datetime:
        """Wake the clock just after each step (of the customer's variants) is due; returns
        when the first is."""
        offset, due = timedelta(), []
        for step in self.config.spec(journey, customer_id=customer_id).steps:
            offset += timedelta(seconds=step.after_s)
            due.append(from_ + offset)
            self.wake.add(self.on_grid(from_ + offset + timedelta(minutes=1)))
        return due[0]

    def variants(self, journey: str, customer_id: str) -> list[str]:
        spec = self.config.spec(journey, customer_id=customer_id)
        return [getattr(step, "variant", "control") for step in spec.steps]

    def held_out(self, journey: str, customer_id: str) -> bool:
        return self.variants(journey, customer_id)[0] == "holdout"

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.start = self.now = await self.shop.tick()
        self._plan()
        while True:
            await self._drain()
            upcoming = [w for w in self.wake if w > self.now]
            if self.agenda:
                upcoming.append(self.agenda[0][0])
            if not upcoming:
                break
            target = min(upcoming)
            if target > self.now:
                await self.shop.env.sleep(target - self.now)
            self.now = await self.shop.tick()
            self.wake = {w for w in self.wake if w > self.now}
            await self._act(self.now)
        # The last e-mails' journeys close when their workflow task runs: let them.
        await self.shop.env.sleep(timedelta(minutes=1))
        await self._drain()

    def _plan(self) -> None:
        """Each customer's arrival: a sign-up, a cart or a view, in one of the waves."""
        assert self.start is not None
        names = sorted(self.behaviour.groups)
        shares = [self.behaviour.groups[name] for name in names]
        for number in range(self.customers):
            customer_id = f"sim-{number:05d}"
            rng = self.rng("customer", customer_id)
            journey = rng.choices(names, shares)[0]
            self.group[customer_id] = journey
            wave = rng.randrange(self.behaviour.waves)
            arrival = {
                "customer_id": customer_id,
                "journey": journey,
                "first_name": rng.choice(FIRST_NAMES),
                "product": rng.choice(PRODUCTS),
            }
            self.at(self.start + wave * self.behaviour.wave_every, "arrive", arrival)

    def _arrive(self, arrival: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """The customer's first events, and the plan of what they do before any e-mail."""
        customer_id, journey, product = (
            arrival["customer_id"],
            arrival["journey"],
            arrival["product"],
        )
        traits = {
            "email": f"{customer_id}@sim.example",
            "firstName": arrival["first_name"],
            "marketing_consent": True,
        }
        calls = []
        if journey == "welcome":
            calls.append(
                self._call("identify", customer_id, now, message_id=customer_id, traits=traits)
            )
        else:
            # A known customer, identified long ago: no welcome now.
            long_ago = now - timedelta(days=400)
            calls.append(
                self._call("identify", customer_id, long_ago, message_id=customer_id, traits=traits)
            )
            event = "Product Added" if journey == "abandoned_cart" else "Product Viewed"
            properties = {**product, "quantity": 1}
            if journey == "abandoned_cart":
                properties["cart_id"] = f"cart-{customer_id}"
            calls.append(
                self._call(
                    "track",
                    customer_id,
                    now,
                    message_id=f"{customer_id}-entry",
                    event=event,
                    properties=properties,
                )
            )
        self._entered(journey, customer_id, now, product=product)
        return calls

    def _entered(
        self, journey: str, customer_id: str, at: datetime, *, product: dict[str, Any]
    ) -> None:
        """Plan what the customer does before their first e-mail, or as a holdout."""
        self.entered_at[(journey, customer_id)] = at
        self.shop.workflow_ids.add(
            {
                "welcome": welcome_id,
                "abandoned_cart": abandoned_cart_id,
                "browse_abandonment": browse_abandonment_id,
            }[journey](customer_id)
        )
        rng = self.rng("entry", journey, customer_id)
        early = self.behaviour.early_order.get(journey, 0.0)
        if early and rng.random() < early:
            # Before the first e-mail (20 minutes away at the soonest): not entered.
            order = self._order(customer_id, product, journey)
            self.at(at + timedelta(minutes=10), "order", order, exact=True)
            return
        first_due = self.expect_mails(journey, customer_id, at)
        if self.held_out(journey, customer_id):
            self.holdouts[journey].append(customer_id)
            if rng.random() < self.behaviour.holdout_order.get(journey, 0.0):
                self.holdout_buyers[journey].add(customer_id)
                delay = timedelta(hours=rng.uniform(1, 72))
                self.at(first_due + delay, "order", self._order(customer_id, product, journey))

    def _order(self, customer_id: str, product: dict[str, Any], journey: str) -> dict[str, Any]:
        """An order, of the abandoned cart when the cart journey led to it."""
        properties: dict[str, Any] = {
            "order_id": f"order-{customer_id}-{self._next_order(customer_id)}",
            "revenue": product["price"],
            "currency": "EUR",
            "products": [{**product, "quantity": 1}],
        }
        if journey == "abandoned_cart":
            properties["cart_id"] = f"cart-{customer_id}"
        return {"customer_id": customer_id, "properties": properties}

    def _next_order(self, customer_id: str) -> int:
        self._orders_of[customer_id] += 1
        return self._orders_of[customer_id]

    def _call(
        self, kind: str, customer_id: str, at: datetime, *, message_id: str, **fields: Any
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "userId": customer_id,
            "messageId": f"sim-{self.seed}-{message_id}",
            "timestamp": at.isoformat(),
            **fields,
        }

    async def _submit(self, calls: list[dict[str, Any]]) -> None:
        """Through ``POST /v1/batch``, up to 100 calls a request, 4 requests in flight.

        A customer's calls stay in one batch, in order: batches in flight are taken in any
        order, and a view before its customer's identify (the consent) starts nothing.
        """
        by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in calls:
            by_customer[call["userId"]].append(call)
        batches: list[list[dict[str, Any]]] = [[]]
        for own in by_customer.values():
            if len(batches[-1]) + len(own) > 100:
                batches.append([])
            batches[-1] += own
        for start in range(0, len(batches), 4):
            replies = await asyncio.gather(
                *(
                    self.http.post("/v1/batch", json={"batch": b})
                    for b in batches[start : start + 4]
                )
            )
            for reply in replies:
                assert reply.status_code == 200, reply.text
                assert not reply.json().get("refused"), reply.text

    async def _drain(self) -> None:
        """Read the e-mails SendGrid took since the last look; decide what each reader does."""
        with self.sendgrid.lock:
            fresh = self.sendgrid.accepted[self._seen :]
            self._seen = len(self.sendgrid.accepted)
        ids = [_send_id(body) for body in fresh]
        if not ids:
            return
        with self.shop.sessions() as session:
            rows = {
                row.id: row
                for start in range(0, len(ids), 500)
                for row in session.scalars(
                    select(EmailSend).where(EmailSend.id.in_(ids[start : start + 500]))
                )
            }
        for send_id in sorted(ids, key=lambda i: rows[i].idempotency_key):
            self._received(rows[send_id])

    def _received(self, row: EmailSend) -> None:
        entry_key = row.idempotency_key.rsplit("/", 1)[0]
        sent_at = row.sent_at or row.due_at or row.created_at
        assert sent_at is not None
        entry = self.entries.get(entry_key)
        if entry is None:
            entry = self.entries[entry_key] = Entry(
                row.journey, row.customer_id, self.variants(row.journey, row.customer_id)
            )
        steps = [step.name for step in getattr(self.config, row.journey).steps]
        expected = entry.steps[steps.index(row.step)]
        if expected != row.variant:
            self.wrong_variant.append(f"{row.id}: {row.variant}, assigned {expected}")
        mail = Mail(row.id, row.customer_id, row.journey, row.step, row.variant, entry_key, sent_at)
        self.mails[row.id] = mail
        entry.mails.append(mail)

        rng = self.rng("mail", row.idempotency_key)
        reaction = self.behaviour.reaction(row.journey, row.step, row.variant)
        events = [("delivered", sent_at + timedelta(minutes=1))]
        acted = sent_at
        mail.opened = rng.random() < reaction.open
        if mail.opened:
            acted = sent_at + timedelta(hours=rng.uniform(0.25, 4))
            events.append(("open", acted))
            mail.clicked = rng.random() < reaction.click
            if mail.clicked:
                acted += timedelta(minutes=10)
                events.append(("click", acted))
        for kind, when in events:
            self.at(when, "event", {"event": kind, "mail": mail})
        chance = (
            reaction.buy_clicked
            if mail.clicked
            else reaction.buy_opened
            if mail.opened
            else reaction.buy_unopened
        )
        buying = rng.random() < chance
        if not entry.bought and buying:
            # Well before the journey's next e-mail (a day or more away): at most 20 h 40.
            entry.bought = mail.bought = True
            product = rng.choice(PRODUCTS)
            self.at(
                acted + timedelta(hours=rng.uniform(0.5, 16)),
                "order",
                self._order(row.customer_id, product, row.journey),
            )

    async def _act(self, now: datetime) -> None:
        due = []
        while self.agenda and self.agenda[0][0] <= now:
            due.append(heapq.heappop(self.agenda))
        events, orders, calls = [], [], []
        for _, _, kind, payload in due:
            if kind == "arrive":
                calls += self._arrive(payload, now)
            elif kind == "event":
                mail: Mail = payload["mail"]
                events.append(
                    {
                        "email": f"{mail.customer_id}@sim.example",
                        "timestamp": int(now.timestamp()),
                        "event": payload["event"],
                        "sg_event_id": f"{payload['event']}-{mail.send_id}",
                        "sg_message_id": f"sg-{mail.send_id}",
                        "send_id": mail.send_id,
                        **({"url": "https://shop.example/"} if payload["event"] == "click" else {}),
                    }
                )
            else:
                orders.append(payload)
        if events:
            body = json.dumps(events).encode()
            reply = await self.http.post(
                "/webhooks/sendgrid", content=body, headers=signed(body, int(now.timestamp()))
            )
            assert reply.status_code == 200, reply.text
            assert reply.json()["recorded"] == len(events), reply.text
        if orders or calls:
            for order in orders:
                customer_id, properties = order["customer_id"], order["properties"]
                self.orders.append(Order(customer_id, properties["order_id"], now))
                self.shop.workflow_ids.add(post_purchase_id(properties["order_id"]))
                calls.append(
                    self._call(
                        "track",
                        customer_id,
                        now,
                        message_id=properties["order_id"],
                        event="Order Completed",
                        properties=properties,
                    )
                )
                self.expect_mails("post_purchase", customer_id, now)
            await self._submit(calls)

    # -- the truth and the report -----------------------------------------------------------

    def truth(self) -> dict[RowKey, Truth]:
        """What each report row must show: its entries' chances, what they did, its e-mails."""
        rows: dict[RowKey, Truth] = defaultdict(Truth)
        for entry in self.entries.values():
            config = getattr(self.config, entry.journey)
            names = [step.name for step in config.steps]
            buys = [
                self.behaviour.reaction(entry.journey, name, variant).buy
                for name, variant in zip(names, entry.steps, strict=True)
            ]
            ends = entry.journey in ENDS_ON_PURCHASE
            for mail in entry.mails:
                remaining = buys[names.index(mail.step) :] if ends else buys
                row = rows[(entry.journey, mail.step, mail.variant)]
                row.chances.append(1 - _product(1 - b for b in remaining))
                row.converted += entry.bought
                row.mails.append(mail)
            # The journey's row: every entry once, as of its first e-mail.
            row = rows[(entry.journey, None, None)]
            row.chances.append(1 - _product(1 - b for b in buys))
            row.converted += entry.bought
        for journey, customers in self.holdouts.items():
            row = rows[(journey, None, "holdout")]
            row.chances = [self.behaviour.holdout_order[journey]] * len(customers)
            row.converted = len(self.holdout_buyers[journey])
        return rows

    def report(self, until: datetime) -> Report:
        assert self.start is not None
        with self.shop.sessions() as session:
            return build_report(
                session, self.config, since=self.start - timedelta(minutes=1), until=until
            )

    def compare(self, report: Report) -> Outcome:
        truths = self.truth()
        checks: list[Check] = []
        counts: list[Count] = []
        reported = {}
        for found in report.journeys:
            for step_row in found.steps:
                reported[(found.journey, step_row.step, step_row.variant)] = step_row
            reported[(found.journey, None, None)] = found.total
            if found.holdout is not None:
                reported[(found.journey, None, "holdout")] = found.holdout
        for key in sorted(set(truths) | set(reported), key=self._row_order):
            journey, step, variant = key
            name = f"{journey}/{step or 'journey'}" + (f"/{variant}" if variant else "")
            row, truth = reported.get(key), truths.get(key, Truth())
            counts.append(Count(f"{name} entered", len(truth.chances), row.entered if row else 0))
            if row is None or not truth.chances:
                continue
            counts.append(Count(f"{name} converted", truth.converted, row.converted))
            ci = row.conversion_ci
            checks.append(
                Check(
                    f"{name} conversion",
                    truth.rate,
                    row.conversion_rate,
                    ci.low if ci else None,
                    ci.high if ci else None,
                    row.entered,
                )
            )
            if step is None:
                continue
            sent = truth.mails
            counts += [
                Count(f"{name} sent", len(sent), row.sent),
                Count(f"{name} delivered", len(sent), row.delivered),
                Count(f"{name} opened", sum(m.opened for m in sent), row.opened),
                Count(f"{name} clicked", sum(m.clicked for m in sent), row.clicked),
            ]
            reaction = self.behaviour.reaction(journey, step, variant or "control")
            for metric, true, hits in (
                ("open rate", reaction.open, row.opened),
                ("click rate", reaction.open * reaction.click, row.clicked),
            ):
                interval = wilson(hits, row.sent)
                checks.append(
                    Check(
                        f"{name} {metric}",
                        true,
                        hits / row.sent if row.sent else None,
                        interval[0] if interval else None,
                        interval[1] if interval else None,
                        row.sent,
                    )
                )
        cart = next((j for j in report.journeys if j.journey == "abandoned_cart"), None)
        if cart is not None and cart.recovery is not None and cart.recovery.ci is not None:
            # Every mailed cart entry is its own cart, and each order names it.
            truth = truths[("abandoned_cart", None, None)]
            counts += [
                Count(
                    "abandoned_cart carts entered", len(truth.chances), cart.recovery.carts_entered
                ),
                Count(
                    "abandoned_cart carts recovered", truth.converted, cart.recovery.carts_recovered
                ),
            ]
            checks.append(
                Check(
                    "abandoned_cart recovery rate",
                    truth.rate,
                    cart.recovery.rate,
                    cart.recovery.ci.low,
                    cart.recovery.ci.high,
                    cart.recovery.carts_entered,
                )
            )
        return Outcome(
            customers=self.customers,
            checks=simultaneous(checks),
            counts=counts,
            report=report,
            mails=len(self.mails),
            orders=len(self.orders),
            late_mail=self.late_mail(),
            wrong_variant=self.wrong_variant,
            unaccounted=self.unaccounted(),
        )

    def _row_order(self, key: RowKey) -> tuple[int, int, int, str]:
        """Journeys as in JOURNEYS, steps as configured, then the journey and its holdout."""
        journey, step, variant = key
        names = [s.name for s in getattr(self.config, journey).steps]
        return (
            JOURNEYS.index(journey),
            names.index(step) if step is not None else len(names) + (variant == "holdout"),
            variant != "control",
            variant or "",
        )

    def unaccounted(self) -> list[str]:
        """Every order inside an entry's conversion window is one the truth counts for it.

        The report converts an entry on *any* completed order of its customer after the
        entry began and up to ``click_window`` after its last planned e-mail, whichever
        journey led to it; the truth counts only the order the entry's own e-mails (or its
        holdout draw) brought. The two agree when no other order of the customer falls in
        the window before that one: a customer enters one of welcome, cart or browse, and
        every later order (a cross-sell's repeat order) comes after the order that
        converted every entry still open. An order inside a window that the truth does
        not count for the entry (or a counted one outside it) is listed here: a way to
        order that the true rates leave out.
        """
        orders: dict[str, list[Order]] = defaultdict(list)
        for order in self.orders:
            orders[order.customer_id].append(order)
        placed = {order.order_id: order.at for order in self.orders}
        tail = self.config.attribution.click_window
        entries = [
            (key, entry.journey, entry.customer_id, entry.bought)
            for key, entry in self.entries.items()
        ] + [
            (
                f"{journey} holdout",
                journey,
                customer_id,
                customer_id in self.holdout_buyers[journey],
            )
            for journey, customers in self.holdouts.items()
            for customer_id in customers
        ]
        wrong = []
        for key, journey, customer_id, bought in entries:
            # The order a post-purchase journey enters on is its start, as in the report.
            began = (
                placed[key.split("/")[1]]
                if journey == "post_purchase"
                else self.entered_at[(journey, customer_id)]
            )
            end = began + getattr(self.config, journey).horizon() + tail
            inside = [o.order_id for o in orders[customer_id] if began < o.at <= end]
            if bool(inside) != bought:
                wrong.append(
                    f"{key}: orders {inside or 'none'} in its window, the truth counts "
                    f"{'one' if bought else 'none'}"
                )
        return wrong

    def late_mail(self) -> list[str]:
        """E-mails a customer should never have got: after their purchase, or held out."""
        orders: dict[str, list[datetime]] = defaultdict(list)
        for order in self.orders:
            orders[order.customer_id].append(order.at)
        late = []
        for mail in self.mails.values():
            if mail.customer_id in self.holdouts.get(mail.journey, ()):
                late.append(f"{mail.send_id}: {mail.journey} mailed a holdout customer")
            if mail.journey not in ENDS_ON_PURCHASE:
                continue
            began = self.entered_at[(mail.journey, mail.customer_id)]
            if any(began <= at <= mail.sent_at for at in orders[mail.customer_id]):
                late.append(f"{mail.send_id}: {mail.journey}/{mail.step} after an order")
        return late


async def simulate(
    env: WorkflowEnvironment,
    database_url: str,
    tmp_path: Path,
    *,
    customers: int,
    seed: int,
    behaviour: Behaviour = STATED,
) -> Outcome:
    """Run the simulated shop on ``env`` and a migrated store; compare the report."""
    with FakeSendGrid() as sendgrid:
        shop = SimulatedShop(env, database_url, tmp_path, sendgrid.url)
        async with shop, shop_api(shop, auth=(WRITE_KEY, ""), timeout=120) as http:
            simulation = Simulation(
                shop, http, sendgrid, customers=customers, seed=seed, behaviour=behaviour
            )
            await simulation.run()
            report = simulation.report(await shop.tick() + timedelta(minutes=1))
            return simulation.compare(report)


def _send_id(body: dict[str, Any]) -> str:
    personalization = (body.get("personalizations") or [{}])[0]
    return str(
        body.get("custom_args", {}).get("send_id")
        or personalization.get("custom_args", {}).get("send_id", "")
    )


def _product(values: Iterable[float]) -> float:
    out = 1.0
    for value in values:
        out *= value
    return out
