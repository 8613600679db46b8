"""Proof against known truth: a simulated shop through the real journeys, then the report.

A few thousand customers whose behaviour is drawn from stated probabilities
(``tests/report/simulation.py``: ``STATED``; the shop's journeys in
``tests/report/simulated_shop.toml``) sign up, leave carts and look at products through
the HTTP intake; the journeys run on the time-skipping server with the worker's real
activities, a fake SendGrid on loopback takes the e-mails, and the customers open, click
(SendGrid's signed Event Webhook, at our endpoint) and order (``Order Completed``) as
drawn. Then :func:`triggermail.analytics.report.build_report` reports the run, and every rate it
should reproduce is checked against the true rate: conversion per journey, step and
variant and of each holdout, open and click rates and the abandoned-cart recovery rate.
Each must hold its true rate within its joint 95 % interval: a Bonferroni-adjusted exact
(Clopper-Pearson) interval of the report's counts, so a correct report has all ~40 inside
in at least 95 % of runs (each rate's own 95 % interval — the report's Wilson interval — is
shown too; a correct report leaves about two of those outside in an average run). Counts
(entered, sent, delivered, opened, clicked, converted) must match exactly, and every order
inside an entry's conversion window must be the one the truth counts for it. The store is
a fresh PostgreSQL database on 127.0.0.1 (SQLite when none is reachable).

    .venv/bin/python bench/simulate.py [--quick] [--customers N] [--seed S] [--seeds N]

``--seeds N`` runs seeds S … S+N-1, each on a fresh store and Temporal server, and tells
how many pass the joint test: a correct report passes at least 95 % of them, and leaves
5 % of the 41 rates (about 2) outside their own 95 % interval per run on average.

Last line: ``RESULT customers=… max_abs_err=… all_within_ci=1|0 rates=… outside_own_95=…``,
where max_abs_err is the largest |reported - true| over the checked rates; with
``--seeds N`` (N > 1) they are over every run (all_within_ci: every run passed;
outside_own_95: the total), followed by ``seeds=N seeds_passed=… mean_outside_own_95=…
expected_outside_own_95=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadkit import database
from rich.console import Console
from rich.table import Table
from temporalio.testing import WorkflowEnvironment

from tests.report.simulation import Outcome, simulate
from triggermail.migrate import upgrade
from triggermail.temporal import binary, register_search_attributes


async def run(customers: int, seed: int) -> tuple[Outcome, float]:
    with tempfile.TemporaryDirectory() as folder, database(Path(folder)) as url:
        upgrade(url)
        async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=binary("temporal-test-server")
        ) as env:
            await register_search_attributes(env.client)
            started = time.perf_counter()
            outcome = await simulate(env, url, Path(folder), customers=customers, seed=seed)
            return outcome, time.perf_counter() - started


def show(outcome: Outcome, elapsed: float, seed: int) -> None:
    console = Console(width=130)
    table = Table(title=f"{outcome.customers} simulated customers, seed {seed}")
    headers = ("metric", "true", "reported", "95 % CI", "in", "joint 95 % CI", "within", "n")
    for header in headers:
        table.add_column(header, justify="left" if header == "metric" else "right")

    def interval(low: float | None, high: float | None) -> str:
        return "—" if low is None or high is None else f"{low:.4f}\N{EN DASH}{high:.4f}"

    for check in outcome.checks:
        table.add_row(
            check.metric,
            f"{check.true:.4f}",
            "—" if check.reported is None else f"{check.reported:.4f}",
            interval(check.low95, check.high95),
            "yes" if check.within_95 else "[yellow]no[/yellow]",
            interval(check.low, check.high),
            "yes" if check.within else "[bold red]NO[/bold red]",
            str(check.n),
        )
    console.print(table)
    wrong = [c for c in outcome.counts if c.true != c.reported]
    console.print(
        f"counts (entered, sent, delivered, opened, clicked, converted per row; carts): "
        f"{len(outcome.counts)} checked, "
        f"{len(wrong)} wrong"
        + "".join(f"\n  {c.metric}: true {c.true}, reported {c.reported}" for c in wrong)
    )
    for problem in [*outcome.late_mail, *outcome.wrong_variant, *outcome.unaccounted][:20]:
        console.print(f"[red]{problem}[/red]")
    misses = sum(not c.within for c in outcome.checks)
    console.print(
        f"{outcome.mails} e-mails, {outcome.orders} orders; {len(outcome.checks)} rates checked: "
        f"{misses} outside their joint 95 % interval (Bonferroni: all inside in 95 % of a "
        f"correct report's runs), {outcome.misses_95} outside their own 95 % interval (a "
        f"correct report misses {outcome.expected_misses:.1f} on average); e-mails after a "
        f"purchase or to a holdout: {len(outcome.late_mail)}; orders the truth leaves out: "
        f"{len(outcome.unaccounted)}; {elapsed:.0f} s"
    )


def show_seed(outcome: Outcome, elapsed: float, seed: int) -> None:
    """One line for a run of many: passed or not, and the rates outside their intervals."""
    console = Console(width=130)
    wrong = sum(c.true != c.reported for c in outcome.counts)
    console.print(
        f"seed {seed}: {'pass' if outcome.all_within_ci else '[bold red]FAIL[/bold red]'}; "
        f"{sum(not c.within for c in outcome.checks)} of {len(outcome.checks)} outside their "
        f"joint interval, {outcome.misses_95} outside their own 95 %; counts wrong {wrong}; "
        f"late {len(outcome.late_mail)}, wrong variant {len(outcome.wrong_variant)}, "
        f"unaccounted {len(outcome.unaccounted)}; max_abs_err {outcome.max_abs_err:.4f}; "
        f"{outcome.mails} e-mails, {outcome.orders} orders; {elapsed:.0f} s"
    )
    for check in outcome.checks:
        if not check.within or not check.within_95:
            mark = "joint" if not check.within else "own"
            console.print(
                f"  outside {mark}: {check.metric} true {check.true:.4f} reported "
                f"{check.reported if check.reported is None else round(check.reported, 4)} "
                f"(n {check.n})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 customers")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1, help="the (first) seed")
    parser.add_argument(
        "--seeds", type=int, default=1, help="run this many seeds from --seed on, one by one"
    )
    args = parser.parse_args()
    customers = 300 if args.quick else args.customers
    if args.seeds <= 1:
        outcome, elapsed = asyncio.run(run(customers, args.seed))
        show(outcome, elapsed, args.seed)
        print(
            f"RESULT customers={customers} max_abs_err={outcome.max_abs_err:.4f} "
            f"all_within_ci={int(outcome.all_within_ci)} rates={len(outcome.checks)} "
            f"outside_own_95={outcome.misses_95}"
        )
        return
    outcomes = []
    for seed in range(args.seed, args.seed + args.seeds):
        outcome, elapsed = asyncio.run(run(customers, seed))
        show_seed(outcome, elapsed, seed)
        outcomes.append(outcome)
    passed = sum(o.all_within_ci for o in outcomes)
    outside = [o.misses_95 for o in outcomes]
    rates = max(len(o.checks) for o in outcomes)
    expected = sum(o.expected_misses for o in outcomes) / len(outcomes)
    # The mean's spread if the rates missed independently, each 5 % of the time.
    spread = (rates * 0.05 * 0.95 / len(outcomes)) ** 0.5
    mean = sum(outside) / len(outside)
    Console(width=130).print(
        f"{passed} of {len(outcomes)} seeds pass the joint test (a correct report: at least "
        f"95 %); rates outside their own 95 % interval: mean {mean:.2f} a run against "
        f"{expected:.2f} expected (binomial spread of the mean ±{spread:.2f}), "
        f"per seed {outside}"
    )
    print(
        f"RESULT customers={customers} "
        f"max_abs_err={max(o.max_abs_err for o in outcomes):.4f} "
        f"all_within_ci={int(passed == len(outcomes))} rates={rates} "
        f"outside_own_95={sum(outside)} seeds={len(outcomes)} seeds_passed={passed} "
        f"mean_outside_own_95={mean:.2f} expected_outside_own_95={expected:.2f}"
    )


if __name__ == "__main__":
    main()
