"""The report against known truth: a small simulated shop (``bench/simulate.py`` runs the
full one) through the real intake, journeys, webhook and report.

The counts are the sharp check: every row's entered, sent, delivered, opened, clicked and
converted must be what the customers did, for any seed. The rates are statistics, held
against joint 95 % intervals (Bonferroni over the ~40 rates: a correct report has all
inside in 95 % of runs; each rate's own 95 % interval would leave about two outside in
an average run). The run is the same every time for a seed, so a rate outside its
interval here means something changed.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.report.simulation import simulate

CUSTOMERS = 200
SEED = 4


async def test_the_report_reproduces_the_rates_of_a_simulated_shop(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    outcome = await simulate(env, sqlite_url, tmp_path, customers=CUSTOMERS, seed=SEED)

    # Nobody got an e-mail after buying (cart, browse), nor as a holdout.
    assert outcome.late_mail == []
    assert outcome.wrong_variant == []
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
