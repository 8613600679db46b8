"""Experiments' figures and the automatic winner, against a hand-built store (both stores)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session

from tests.report.builders import T0, Store, at
from triggermail.analytics.experiments import evaluate, probability_best
from triggermail.journeys import JourneysConfig, load_journeys
from triggermail.store import Experiment
from triggermail.winners import Winners

NAME = "abandoned_cart.reminder"
NOW = T0 + timedelta(days=30)


def experiment(
    *, min_recipients: int = 10, probability: float = 0.9, auto: bool = True
) -> JourneysConfig:
    journeys = load_journeys()
    cart = journeys.abandoned_cart
    data: dict[str, Any] = cart.model_dump()
    data["steps"][0]["variants"] = [{"name": "later", "after": "1h"}]
    if auto:
        data["steps"][0]["auto_winner"] = {
            "min_recipients": min_recipients,
            "probability": probability,
        }
    return journeys.model_copy(update={"abandoned_cart": type(cart).model_validate(data)})


def entries(store: Store, variant: str, count: int, converted: int, *, when: Any = T0) -> None:
    """``count`` abandoned carts whose reminder went as ``variant``; ``converted`` bought."""
    for i in range(count):
        customer = f"{variant}-{i}-{when:%d%H}"
        store.send(customer, "reminder", when, variant=variant)
        if i < converted:
            store.order(customer, when + timedelta(hours=2))


def exact_p_first_better(a: tuple[int, int], b: tuple[int, int]) -> float:
    """P(rate_a > rate_b) for Beta(1+k, 1+n-k) posteriors, by numerical integration."""
    x = np.linspace(1e-6, 1 - 1e-6, 200_001)

    def log_pdf(k: int, n: int) -> Any:
        alpha, beta = 1 + k, 1 + n - k
        norm = math.lgamma(alpha + beta) - math.lgamma(alpha) - math.lgamma(beta)
        return norm + (alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x)

    pdf_a, pdf_b = np.exp(log_pdf(*a)), np.exp(log_pdf(*b))
    dx = x[1] - x[0]
    cdf_b = np.cumsum(pdf_b) * dx
    return float(np.sum(pdf_a * cdf_b) * dx)


def test_probability_best_matches_the_exact_posterior_and_is_repeatable() -> None:
    counts = {"control": (20, 100), "later": (30, 100)}
    best = probability_best(counts, seed=NAME)
    exact = exact_p_first_better((30, 100), (20, 100))
    assert best["later"] == pytest.approx(exact, abs=0.01)
    assert best["control"] == pytest.approx(1 - exact, abs=0.01)
    assert probability_best(counts, seed=NAME) == best
    even = probability_best({"a": (10, 100), "b": (10, 100), "c": (10, 100)}, seed="x")
    assert all(p == pytest.approx(1 / 3, abs=0.02) for p in even.values())


def test_a_clear_winner_is_recorded_once_and_kept(session: Session, store: Store) -> None:
    config = experiment()
    entries(store, "control", 40, 4)
    entries(store, "later", 40, 20)
    session.commit()

    (looked,) = evaluate(session, config, now=NOW, decide=False)
    assert looked.winner is None and session.get(Experiment, NAME) is None
    figures = {v.name: (v.entered, v.sent, v.converted) for v in looked.variants}
    assert figures == {"control": (40, 40, 4), "later": (40, 40, 20)}

    (status,) = evaluate(session, config, now=NOW, decide=True)
    assert status.decided_now and status.winner == "later"
    assert status.probability is not None and status.probability > 0.99
    record = session.get(Experiment, NAME)
    assert record is not None and record.winner == "later" and record.started_at == T0
    assert record.figures is not None and record.figures["later"]["converted"] == 20

    entries(store, "control", 200, 150, when=at(days=1))
    session.commit()
    (again,) = evaluate(session, config, now=NOW, decide=True)
    assert again.winner == "later" and not again.decided_now
    assert again.note.startswith("decided")


def test_no_winner_before_every_variant_has_its_recipients(session: Session, store: Store) -> None:
    entries(store, "control", 40, 2)
    entries(store, "later", 9, 9)
    session.commit()

    (status,) = evaluate(session, experiment(), now=NOW)
    assert status.winner is None
    assert status.note == "waiting for 10 recipients each (later)"


def test_the_experiment_starts_with_its_first_variant_row(session: Session, store: Store) -> None:
    entries(store, "control", 30, 30, when=at(days=-5))  # before it: everyone got control
    entries(store, "control", 10, 1)
    entries(store, "later", 10, 1)
    session.commit()

    (status,) = evaluate(session, experiment(), now=NOW)
    assert status.started_at == T0
    assert {v.name: v.entered for v in status.variants} == {"control": 10, "later": 10}


def test_no_winner_while_the_leader_is_unsure(session: Session, store: Store) -> None:
    entries(store, "control", 40, 10)
    entries(store, "later", 40, 12)
    session.commit()

    (status,) = evaluate(session, experiment(), now=NOW)
    assert status.winner is None and "leads at" in status.note


def test_entries_still_inside_their_window_are_not_judged(session: Session, store: Store) -> None:
    entries(store, "control", 40, 0)
    entries(store, "later", 1, 0)
    entries(store, "later", 40, 0, when=NOW - timedelta(days=1))
    session.commit()

    (status,) = evaluate(session, experiment(), now=NOW)
    counted = {v.name: v.entered for v in status.variants}
    assert counted == {"control": 40, "later": 1}
    assert status.counted_until < NOW - timedelta(days=6)


def test_winners_are_read_once_per_ttl_and_not_without_automatic_winners(
    session: Session, store: Store
) -> None:
    ticks = iter([0.0, 1.0, 100.0])
    winners = Winners(ttl=timedelta(seconds=30), monotonic=lambda: next(ticks))
    config = experiment()
    assert winners.current(session, config) == {}
    session.add(Experiment(name=NAME, journey="abandoned_cart", step="reminder", started_at=T0))
    session.get(Experiment, NAME).winner = "later"  # type: ignore[union-attr]
    session.commit()
    assert winners.current(session, config) == {}  # within the TTL: the earlier read
    assert winners.current(session, config) == {NAME: "later"}
    assert Winners().current(session, experiment(auto=False)) == {}
