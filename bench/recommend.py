"""Milliseconds per ``recommend()`` call on PostgreSQL: the products an e-mail shows beside
its own.

A fresh database of its own on 127.0.0.1:5432 (user ``postgres``; SQLite when PostgreSQL
does not answer, as in the other benches, and ``store=`` says which), migrated, filled by
Core inserts and dropped after the run: products in 25 brands and 60 categories, about 10 %
out of stock; orders of 4 lines whose products are picked by popularity (a long tail: the
weight of the product of rank r is 1/r^0.8), 90 % completed, the rest refunded, over one
year; about 3 orders a customer. Then ``VACUUM ANALYZE``, 30 warm-up calls, and the timed
calls: a random customer, 1-3 seeds drawn by popularity (as carts and orders are),
``limit=4``, each in a session whose connection is already open, as the content activity's
is. The table splits the calls by their best-selling seed, whose order lines the call reads
all of.

    .venv/bin/python bench/recommend.py [--quick] [--products N] [--lines N] [--calls N]

The last line is ``RESULT ms_median=… ms_p95=… products=… order_lines=… calls=… store=…``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from loadkit import database, percentile
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from activities.recommendations import recommend
from triggermail.migrate import upgrade
from triggermail.store import Customer, Order, OrderLine, Product, make_engine

LINES_PER_ORDER = 4
WARM_UP = 30
LIMIT = 4
START = datetime(2025, 11, 23, tzinfo=UTC)
BUCKETS = ((1, 10), (11, 100), (101, None))
"""Calls grouped by the popularity rank of their best-selling seed."""


def load(
    engine: sa.Engine, rng: random.Random, products: list[str], weights: list[float], lines: int
) -> tuple[list[str], Counter[str]]:
    """The catalogue, customers, orders and lines; returns the customers and each product's
    line count."""
    customers = [f"c{i:05d}" for i in range(max(100, lines // 12))]
    stocks = (0, None, None, 1, 3, 7, 10, 20, 50, 100)  # one in ten sold out
    catalogue = [
        {
            "id": pid,
            "name": f"Product {pid}",
            "brand": f"b{rng.randrange(25)}",
            "category": f"k{rng.randrange(60)}",
            "stock": rng.choice(stocks),
        }
        for pid in products
    ]
    orders, order_lines = [], []
    line_counts: Counter[str] = Counter()
    for o in range(lines // LINES_PER_ORDER):
        oid = f"o{o:07d}"
        orders.append(
            {
                "id": oid,
                "customer_id": rng.choice(customers),
                "status": "completed" if rng.random() < 0.9 else "refunded",
                "placed_at": START + timedelta(minutes=rng.randrange(365 * 24 * 60)),
            }
        )
        for pid in rng.choices(products, weights, k=LINES_PER_ORDER):
            order_lines.append({"order_id": oid, "product_id": pid, "quantity": 1})
            line_counts[pid] += 1
    with engine.begin() as conn:
        conn.execute(sa.insert(Product), catalogue)
        conn.execute(
            sa.insert(Customer),
            [{"id": c, "marketing_consent": True, "traits": {}} for c in customers],
        )
        conn.execute(sa.insert(Order), orders)
        conn.execute(sa.insert(OrderLine), order_lines)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return customers, line_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 products, 8,000 lines")
    parser.add_argument("--products", type=int)
    parser.add_argument("--lines", type=int, help="order lines")
    parser.add_argument("--calls", type=int, help="timed calls")
    args = parser.parse_args()
    n_products = args.products or (2_000 if args.quick else 5_000)
    n_lines = args.lines or (8_000 if args.quick else 20_000)
    n_calls = args.calls or (200 if args.quick else 500)

    with tempfile.TemporaryDirectory() as folder, database(Path(folder)) as url:
        run(url, n_products=n_products, n_lines=n_lines, n_calls=n_calls)


def run(url: str, *, n_products: int, n_lines: int, n_calls: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(7)
    products = [f"p{i:06d}" for i in range(n_products)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(n_products)]
    started = time.perf_counter()
    customers, line_counts = load(engine, rng, products, weights, n_lines)
    load_s = time.perf_counter() - started

    def call(customer: str, seeds: list[str]) -> tuple[float, int]:
        with Session(engine) as session:
            session.connection()  # the content activity's session has read the store already
            started = time.perf_counter()
            found = recommend(session, customer_id=customer, seeds=seeds, limit=LIMIT)
            return (time.perf_counter() - started) * 1e3, len(found)

    def draw() -> tuple[str, list[str]]:
        seeds = rng.choices(products, weights, k=rng.randint(1, 3))
        return rng.choice(customers), list(dict.fromkeys(seeds))

    for _ in range(WARM_UP):
        call(*draw())
    load_before = os.getloadavg()[0]
    timed, full = [], 0
    for _ in range(n_calls):
        customer, seeds = draw()
        elapsed, found = call(customer, seeds)
        full += found == LIMIT
        # The products are numbered by popularity: the lowest id is the best seller.
        timed.append((elapsed, int(min(seeds)[1:]) + 1, seeds))
    load_after = os.getloadavg()[0]
    engine.dispose()

    ms = [t for t, _, _ in timed]
    table = Table(title=f"recommend(limit={LIMIT}), {n_products:,} products, {n_lines:,} lines")
    for header in ("best-selling seed", "calls", "median ms", "p95 ms", "its order lines"):
        table.add_column(header, justify="left" if header == "best-selling seed" else "right")
    for low, high in BUCKETS:
        rows = [
            (t, seeds) for t, rank, seeds in timed if rank >= low and (high is None or rank <= high)
        ]
        if not rows:
            continue
        best = [line_counts[min(seeds)] for _, seeds in rows]
        table.add_row(
            f"rank {low}-{high}" if high else f"rank {low}+",
            str(len(rows)),
            f"{statistics.median(t for t, _ in rows):.2f}",
            f"{percentile([t for t, _ in rows], 95):.2f}",
            f"{min(best)}-{max(best)}",
        )
    table.add_row(
        "all", str(len(ms)), f"{statistics.median(ms):.2f}", f"{percentile(ms, 95):.2f}", ""
    )
    Console().print(table)
    print(
        f"{len(customers):,} customers, loaded in {load_s:.1f} s; {full} of {len(ms)} calls "
        f"found {LIMIT} products; mean {statistics.mean(ms):.2f} ms, max {max(ms):.2f} ms; "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(
        f"RESULT ms_median={statistics.median(ms):.2f} ms_p95={percentile(ms, 95):.2f} "
        f"products={n_products} order_lines={n_lines} calls={len(ms)} "
        f"store={engine.dialect.name}"
    )


if __name__ == "__main__":
    main()
