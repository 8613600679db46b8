"""The experiments' decided winners, as the intake and the sweep start journeys with them.

A base module: the intake's hot path reads it on every entry, and must not pull in the
report and its statistics (``triggermail.analytics``) to do so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triggermail.journeys import JourneysConfig
from triggermail.store import Experiment


@dataclass
class Winners:
    """Decided winners by experiment name, for the intake and the sweep to start journeys
    with; read from the store at most once per ``ttl``, and not at all without
    experiments that can have one."""

    ttl: timedelta = timedelta(seconds=30)
    monotonic: Callable[[], float] = field(default=time.monotonic)
    _winners: dict[str, str] = field(default_factory=dict)
    _read_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self, session: Session, config: JourneysConfig) -> dict[str, str]:
        if not any(step.auto_winner for _, _, step in config.experiments()):
            return {}
        now = self.monotonic()
        with self._lock:
            if self._read_at is not None and now - self._read_at < self.ttl.total_seconds():
                return self._winners
        winners = {
            name: winner
            for name, winner in session.execute(
                select(Experiment.name, Experiment.winner).where(Experiment.winner.is_not(None))
            )
            if winner is not None
        }
        with self._lock:
            self._winners, self._read_at = winners, now
        return winners
