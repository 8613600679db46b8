"""One day's sweep over 1,000,000 customers in PostgreSQL, beside a bare indexed SELECT.

A throwaway database on 127.0.0.1:5432 (user ``postgres``), migrated, filled with COPY:
customers with 1-5 orders over three years (their order statistics as the intake keeps
them), 70 % with a birthday, 10 % without consent, 2 % suppressed; the orders themselves;
the buyer tally as migration 0008 starts it. Dropped at the end.

*Sweep*: the store part of one sweep with the real code — the plan (covered days, the VIP
threshold, the win-back threshold), then every page as the page activity reads it
(matches, suppressions) and records it (journey entries with the segment) — with the
Temporal calls left out (the describes and starts): those are Temporal's cost, measured
separately on a sample against a dev server (``--starts N``, 0 to skip). *Select*: a bare
``SELECT *`` of the same matches through the same indexes. Each is timed three times, the
sweep's entries removed (and vacuumed away) between runs, the buyer tally left as a day of
orders leaves it (a row for each first order since the last sweep, for the plan to fold),
and the medians compared.

    .venv/bin/python bench/sweep.py [--quick] [--customers N] [--starts N] [--explain]

The last line is ``RESULT sweep_s=… select_s=… ratio=… matches=… rows=… plan_s=…
pages_s=… pages_ratio=… …``: ``rows`` counts the rows the sweep read (matches and their
suppressions) and wrote (journey entries); ``plan_s`` is the once-per-sweep part (the VIP
threshold from the buyer tally), ``pages_s`` the rest, which grows with the matches.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import sqlalchemy as sa
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.sweep import SweepActivities
from activities.sweep_store import midnight, month_days, occasion_days
from triggermail.journey_tables import Birthday, Reactivation, Step, WinBack
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.migrate import upgrade
from triggermail.search_attributes import ALL
from triggermail.store import (
    BuyerTally,
    JourneyEntry,
    SweepRun,
    make_engine,
    make_session_factory,
)
from triggermail.temporal import binary, register_search_attributes
from workflows.sweep import JourneyCounts, SweepCursor, SweepPlan

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati", None]


def journeys() -> JourneysConfig:
    hour, week = timedelta(hours=1), timedelta(days=7)
    return load_journeys().model_copy(
        update={
            "reactivation": Reactivation(steps=[Step(name="ask", after=hour, template="r/a")]),
            "win_back": WinBack(
                steps=[
                    Step(name="offer", after=hour, template="w/o", phase="offer"),
                    Step(name="value", after=week, template="w/v", phase="value"),
                    Step(name="farewell", after=week, template="w/f", phase="farewell"),
                ]
            ),
            "birthday": Birthday(
                steps=[
                    Step(name="birthday", after=timedelta(0), template="b/b"),
                    Step(name="anniversary", after=timedelta(0), template="b/a"),
                ]
            ),
        }
    )


def load(url: str, customers: int) -> tuple[int, float]:
    """Customers and their orders by COPY; returns the orders count and seconds taken."""
    rng = random.Random(7)
    started = time.perf_counter()
    orders = 0
    span = 3 * 365 * 86400
    with (
        psycopg.connect(url) as conn,
        psycopg.connect(url) as orders_conn,
        conn.cursor() as cur,
        orders_conn.cursor() as orders_cur,
    ):
        # Both tables in one pass: the orders skip their foreign key check, which would wait
        # for the customers' transaction (a throwaway database, filled consistently). The
        # customers skip the buyer tally's triggers: the tally is set once, below, as
        # migration 0008 sets it for the customers already in a store.
        orders_cur.execute("SET session_replication_role = replica")
        cur.execute("SET session_replication_role = replica")
        with (
            cur.copy(
                "COPY customers (id, email, marketing_consent, timezone, traits, created_at,"
                " updated_at, birthday, birthday_md, orders_count, total_spent, first_order_at,"
                " first_order_md, last_order_at) FROM STDIN"
            ) as customers_copy,
            orders_cur.copy(
                "COPY orders (id, customer_id, status, total, revenue, currency, placed_at)"
                " FROM STDIN"
            ) as orders_copy,
        ):
            for i in range(customers):
                k = rng.choices((1, 2, 3, 5), weights=(50, 25, 15, 10))[0]
                last = NOW - timedelta(seconds=rng.randrange(span))
                placed = [last]
                for _ in range(k - 1):
                    placed.insert(0, placed[0] - timedelta(days=rng.randrange(20, 120)))
                totals = [Decimal(rng.randrange(2000, 20000)) / 100 for _ in range(k)]
                born = (
                    date(rng.randrange(1950, 2006), 1, 1) + timedelta(days=rng.randrange(365))
                    if rng.random() < 0.7
                    else None
                )
                cid = f"c{i:07}"
                customers_copy.write_row(
                    (
                        cid,
                        f"{cid}@example.com",
                        rng.random() < 0.9,
                        rng.choice(ZONES),
                        "{}",
                        placed[0],
                        last,
                        born,
                        born.strftime("%m-%d") if born else None,
                        k,
                        sum(totals),
                        placed[0],
                        placed[0].strftime("%m-%d"),
                        last,
                    )
                )
                for j, (at, total) in enumerate(zip(placed, totals, strict=True)):
                    orders_copy.write_row(
                        (f"{cid}-o{j}", cid, "completed", total, total, "EUR", at)
                    )
                orders += k
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute(
            "INSERT INTO buyer_tally (change) SELECT count(*) FROM customers WHERE total_spent > 0"
        )
        conn.commit()
        orders_conn.commit()
        with cur.copy(
            "COPY suppressions (customer_id, reason, source, created_at) FROM STDIN"
        ) as suppressions_copy:
            for i in rng.sample(range(customers), customers // 50):
                reason = rng.choice(("unsubscribed", "sunset", "bounced"))
                suppressions_copy.write_row((f"c{i:07}", reason, "link", NOW))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return orders, time.perf_counter() - started


class NoTemporal:
    """Where the client goes: the store part never calls Temporal."""


def run_sweep(
    activities: SweepActivities,
) -> tuple[float, float, int, dict[str, JourneyCounts], Any]:
    """The plan, then each page's store work as the page activity does it; the whole time
    and the plan's."""
    started = time.perf_counter()
    plan = activities.store.plan(DAY.isoformat())
    plan_s = time.perf_counter() - started
    rows = 0
    counts: dict[str, JourneyCounts] = {}
    cursor: SweepCursor | None = SweepCursor(plan.kinds[0])
    while cursor is not None:
        page = activities.store.read_page(plan, cursor)
        entries = activities.store.record_entries(plan, page.candidates)
        rows += page.rows + len(entries)
        kind = counts.setdefault(page.kind, JourneyCounts())
        kind.add(page.counts)
        kind.started += len(entries)
        cursor = page.next
    return time.perf_counter() - started, plan_s, rows, counts, plan


def bare_queries(plan: SweepPlan, config: JourneysConfig) -> list[sa.Select[Any]]:
    """The same matches as the sweep's, in one indexed SELECT per kind."""
    from triggermail.store import Customer

    first, day = date.fromisoformat(plan.first_day), date.fromisoformat(plan.day)
    assert config.reactivation is not None and plan.win_back_after_s is not None
    queries = []
    for after in (config.reactivation.after_last_order, timedelta(seconds=plan.win_back_after_s)):
        lo, hi = midnight(first) - after, midnight(day) + timedelta(days=1) - after
        queries.append(
            sa.select(Customer).where(Customer.last_order_at >= lo, Customer.last_order_at < hi)
        )
    days = month_days(occasion_days(plan))
    queries.append(sa.select(Customer).where(Customer.birthday_md.in_(list(days))))
    queries.append(
        sa.select(Customer).where(
            Customer.first_order_md.in_(list(days)),
            Customer.first_order_at < midnight(min(days.values())),
        )
    )
    return queries


def run_select(engine: sa.Engine, queries: list[sa.Select[Any]]) -> tuple[float, int]:
    started = time.perf_counter()
    found = 0
    with engine.connect() as conn:
        for query in queries:
            found += len(conn.execute(query).all())
    return time.perf_counter() - started, found


def day_of_buyers(engine: sa.Engine) -> tuple[int, int]:
    """The buyers, and the customers whose first order came since the last sweep."""
    from triggermail.store import Customer

    with engine.connect() as conn:
        buyers = conn.scalar(sa.select(sa.func.count()).where(Customer.total_spent > 0))
        new = conn.scalar(
            sa.select(sa.func.count()).where(Customer.first_order_at >= NOW - timedelta(days=1))
        )
    return buyers or 0, new or 0


def reset(engine: sa.Engine, buyers: int, new: int) -> None:
    """No entries; the buyer tally as a day of orders leaves it: folded by the last sweep,
    then a row for each of the day's first orders, for this sweep's plan to fold."""
    with engine.begin() as conn:
        conn.execute(sa.delete(JourneyEntry))
        conn.execute(sa.delete(SweepRun).where(SweepRun.day == DAY))
        conn.execute(sa.delete(BuyerTally))
        conn.execute(sa.insert(BuyerTally), [{"change": buyers - new}] + [{"change": 1}] * new)
    # Without the dead rows of the last run's entries, which production never deletes: a
    # unique index full of them makes every insert check them.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM journey_entries, buyer_tally")


def explain(engine: sa.Engine, queries: list[sa.Select[Any]]) -> None:
    with engine.connect() as conn:
        for query in queries:
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}").all()
            print("\n".join(row[0] for row in plan), "\n")


async def time_starts(activities: SweepActivities, plan: SweepPlan, sample: int) -> float:
    """Journey starts per second against a dev server, with the sweep's own start call."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=ALL,
        dev_server_log_level="error",
    ) as env:
        await register_search_attributes(env.client)
        activities.client = env.client
        page = activities.store.read_page(plan, SweepCursor("reactivation"))
        candidates = (page.candidates * (sample // max(len(page.candidates), 1) + 1))[:sample]
        # Unique IDs: the sample repeats the page's customers.
        candidates = [
            type(c)(**{**c.__dict__, "workflow_id": f"{c.workflow_id}/{i}"})
            for i, c in enumerate(candidates)
        ]
        started = time.perf_counter()
        outcomes = await activities._start_all(candidates)
        elapsed = time.perf_counter() - started
        assert outcomes.count("started") == len(candidates), outcomes[:3]
        return len(candidates) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 customers")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--starts", type=int, default=1000, help="journey starts to time; 0: none")
    parser.add_argument("--explain", action="store_true", help="print the bare queries' plans")
    parser.add_argument(
        "--keep", metavar="NAME", help="load into database NAME once and keep it (profiling)"
    )
    args = parser.parse_args()
    customers = args.customers or (100_000 if args.quick else 1_000_000)

    name = args.keep or f"triggermail_bench_sweep_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        exists = conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        if not exists:
            upgrade(url)
            orders, load_s = load(url, customers)
            print(f"loaded {customers:,} customers, {orders:,} orders in {load_s:.0f}s")
        engine = make_engine(url)
        config = journeys()
        activities = SweepActivities(
            session_factory=make_session_factory(engine),
            journeys=config,
            client=cast(Client, NoTemporal()),
            task_queue="bench",
            clock=lambda: NOW,
        )
        # The day before was swept: this sweep covers one day, as every day.
        with engine.begin() as conn:
            conn.execute(sa.delete(SweepRun))
            conn.execute(
                sa.insert(SweepRun).values(
                    day=DAY - timedelta(days=1), started_at=NOW, finished_at=NOW, counts={}
                )
            )
        buyers, new_buyers = day_of_buyers(engine)
        plan = activities.store.plan(DAY.isoformat())
        queries = bare_queries(plan, config)
        if args.explain:
            explain(engine, queries)
        run_select(engine, queries)  # warm the cache for both
        sweeps, plans, selects = [], [], []
        for _ in range(3):
            reset(engine, buyers, new_buyers)
            sweep_s, plan_s, rows, counts, plan = run_sweep(activities)
            select_s, found = run_select(engine, queries)
            sweeps.append(sweep_s)
            plans.append(plan_s)
            selects.append(select_s)
        matches = sum(c.matched for c in counts.values())
        started = sum(c.started for c in counts.values())
        for kind, c in counts.items():
            print(f"  {kind}: matched {c.matched}, to start {c.started}, skipped {c.skipped}")
        print(f"  bare SELECT rows {found} (the sweep's matches: {matches})")
        print(f"  buyers {buyers:,}; new since the last sweep (tally rows to fold): {new_buyers}")
        print(
            f"  sweeps {[round(s, 3) for s in sweeps]}, their plans {[round(s, 3) for s in plans]}"
        )
        print(f"  selects {[round(s, 3) for s in selects]}")
        starts_per_s = 0.0
        if args.starts:
            starts_per_s = asyncio.run(time_starts(activities, plan, args.starts))
            print(
                f"  journey starts against a dev server: {starts_per_s:.0f}/s; the day's "
                f"{started} would take ≈ {started / starts_per_s:.1f}s of Temporal's time"
            )
        engine.dispose()
        sweep_s, select_s = statistics.median(sweeps), statistics.median(selects)
        plan_s = statistics.median(plans)
        pages_s = statistics.median(s - p for s, p in zip(sweeps, plans, strict=True))
        print(
            f"RESULT sweep_s={sweep_s:.3f} select_s={select_s:.3f} "
            f"ratio={sweep_s / select_s:.2f} matches={matches} rows={rows} "
            f"plan_s={plan_s:.3f} pages_s={pages_s:.3f} pages_ratio={pages_s / select_s:.2f} "
            f"customers={customers} to_start={started} starts_per_s={starts_per_s:.0f}"
        )
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
