"""The report against known truth: a small simulated shop (``bench/simulate.py`` runs the
full one) through the real intake, journeys, webhook and report.

The counts are the sharp check: every row's entered, sent, delivered, opened, clicked and
converted must be what the customers did, for any seed. The rates are statistics, held
against joint 95 % intervals (exact intervals, Bonferroni over the ~40 rates: a correct
report has all inside in at least 95 % of runs; each rate's own 95 % interval would
leave about two outside in an average run). The run is the same every time for a seed,
so a rate outside its interval here means something changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.report.simulation import (
    Check,
    Order,
    Simulation,
    exact,
    simulate,
    simulated_journeys,
    simultaneous,
)

CUSTOMERS = 200
SEED = 4


async def test_the_report_reproduces_the_rates_of_a_simulated_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    outcome = await simulate(env, sqlite_url, tmp_path, customers=CUSTOMERS, seed=SEED)

    # Nobody got an e-mail after buying (cart, browse), nor as a holdout.
    assert outcome.late_mail == []
    assert outcome.wrong_variant == []
    # Every order inside an entry's window is the one the truth counts for it.
    assert outcome.unaccounted == []
    # Every row counts exactly the entries and e-mails the customers saw.
    assert [c for c in outcome.counts if c.true != c.reported] == []
    # Every journey, step and variant the shop has is in the report, with its holdout.
    metrics = {check.metric for check in outcome.checks}
    for row in (
        "welcome/journey/holdout conversion",
        "abandoned_cart/reminder/urgent conversion",
        "abandoned_cart/incentive/fifteen conversion",
        "abandoned_cart/journey/holdout conversion",
        "browse_abandonment/viewed/later conversion",
        "browse_abandonment/journey/holdout conversion",
        "post_purchase/cross_sell/control conversion",
        "abandoned_cart recovery rate",
    ):
        assert row in metrics
    outside = [check for check in outcome.checks if not check.within]
    assert outside == []
    assert outcome.all_within_ci


# -- the check itself -------------------------------------------------------------------


def _chance_outside(
    trials: int, rate: float, interval: Callable[[int], tuple[float, float]]
) -> float:
    """How often ``rate`` falls outside ``interval(successes)`` when it is the true rate."""
    return sum(
        math.comb(trials, k) * rate**k * (1 - rate) ** (trials - k)
        for k in range(trials + 1)
        if not interval(k)[0] <= rate <= interval(k)[1]
    )


def test_the_joint_interval_is_clopper_pearsons() -> None:
    # Published exact 95 % intervals.
    assert exact(2, 8, alpha=0.05) == pytest.approx((0.0319, 0.6509), abs=1e-4)
    assert exact(8, 60, alpha=0.05) == pytest.approx((0.0594, 0.2459), abs=1e-4)
    assert exact(0, 10, alpha=0.05) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert exact(10, 10, alpha=0.05) == pytest.approx((0.6915, 1.0), abs=1e-4)


@pytest.mark.parametrize(
    ("trials", "rate"),
    # The small rows of a 300-customer run: holdouts, a timing variant, post-purchase.
    [(4, 0.04), (8, 0.03), (13, 0.05), (19, 0.094), (60, 0.042), (72, 0.086), (300, 0.5)],
)
def test_a_true_rate_falls_outside_its_joint_interval_no_more_often_than_promised(
    trials: int, rate: float
) -> None:
    alpha = 0.05 / 41
    assert _chance_outside(trials, rate, lambda k: exact(k, trials, alpha=alpha)) <= alpha


def test_a_small_row_at_its_true_rate_passes_the_joint_test() -> None:
    """Seed 1 of ``--quick``: 2 of 8 browse holdouts ordered at a true 3 % (a 2.2 % chance).

    Wilson's interval at Bonferroni's level left 3 % out, and would for 2.2 % of runs of
    that row alone; the joint test promises 0.12 % a rate.
    """
    row = Check("browse_abandonment/journey/holdout conversion", 0.03, 2 / 8, None, None, 8)
    others = [Check(f"rate {i}", 0.5, 0.5, None, None, 100) for i in range(40)]
    checked = simultaneous([row, *others])[0]
    assert checked.within
    assert checked.low is not None and checked.low < 0.03


def test_an_order_the_truth_does_not_count_is_listed() -> None:
    simulation = Simulation(
        SimpleNamespace(journeys=simulated_journeys()),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        customers=2,
        seed=1,
    )
    entered = datetime(2026, 12, 1, tzinfo=UTC)
    for customer_id in ("sim-00001", "sim-00002"):
        simulation.holdouts["browse_abandonment"].append(customer_id)
        simulation.entered_at[("browse_abandonment", customer_id)] = entered
    # sim-00001 drew its holdout order; sim-00002 did not, yet orders two days in (as if
    # another journey's e-mail had brought it): the report converts both entries.
    simulation.holdout_buyers["browse_abandonment"].add("sim-00001")
    simulation.orders = [
        Order("sim-00001", "order-sim-00001-1", entered + timedelta(days=2)),
        Order("sim-00002", "order-sim-00002-1", entered + timedelta(days=2)),
    ]
    assert simulation.unaccounted() == [
        "browse_abandonment holdout: orders ['order-sim-00002-1'] in its window, "
        "the truth counts none"
    ]
