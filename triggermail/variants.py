"""Who gets which variant of a step, and who is held out: deterministic, by hashing.

A customer's draw depends only on the experiment's (or journey's) name and their id, so
every entry, every process and every replay agrees, and changing one experiment's
weights never reshuffles another's customers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CONTROL = "control"
HOLDOUT = "holdout"


def unit(*parts: str) -> float:
    """A uniform draw in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(journey: str, customer_id: str, share: float) -> bool:
    """Whether the customer is in the journey's holdout (never mailed by it)."""
    return share > 0 and unit(journey, HOLDOUT, customer_id) < share


def assign_variant(experiment: str, customer_id: str, weights: Sequence[tuple[str, float]]) -> str:
    """The variant of ``weights`` (name, weight) the customer gets in ``experiment``."""
    total = sum(weight for _, weight in weights)
    point = unit(experiment, customer_id) * total
    for name, weight in weights:
        point -= weight
        if point < 0:
            return name
    return weights[-1][0]
